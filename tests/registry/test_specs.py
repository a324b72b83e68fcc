"""Spec formats and sizes through the whole path: Swagger 2.0 and YAML documents served over
HTTP, and a multi-megabyte spec (above the 1 MB NATS payload limit) registered, listed and
invoked."""

import orjson

from tests.registry.conftest import as_org, must

SWAGGER2_YAML = """
swagger: "2.0"
info: {{title: Echo (Swagger 2), version: "1.0"}}
host: 127.0.0.1:{port}
basePath: /
schemes: [http]
consumes: [application/json]
securityDefinitions:
  key: {{type: apiKey, in: header, name: X-Echo-Key}}
paths:
  /anything:
    post:
      summary: Echo a JSON body
      parameters:
        - {{name: body, in: body, required: true, schema: {{$ref: "#/definitions/Message"}}}}
        - {{name: lang, in: query, type: string}}
        - {{name: X-Trace-Tag, in: header, type: string}}
      responses:
        200: {{description: ok, schema: {{$ref: "#/definitions/Message"}}}}
    put:
      operationId: putForm
      consumes: [application/x-www-form-urlencoded]
      parameters:
        - {{name: name, in: formData, type: string, required: true}}
        - {{name: age, in: formData, type: integer}}
      responses:
        200: {{description: ok}}
definitions:
  Message:
    type: object
    required: [text]
    properties:
      text: {{type: string}}
      created: {{type: string, format: date, example: 2024-01-01}}
      reply: {{$ref: "#/definitions/Message"}}
"""


async def invoke(http, org, operation, **body):
    response = await http.post("/api/integrations/invoke", headers=as_org(org), json={"operation": operation, **body})
    return response.status_code, response.json()


async def test_swagger2_yaml_by_url(http, org, httpbin, documents):
    url = documents.serve("/specs/echo.yaml", SWAGGER2_YAML.format(port=httpbin.port), "application/yaml")
    reply = must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "echo2", "type": "openapi", "openapi": {"specUrl": url}}))
    integration = reply["integration"]
    assert integration["openapi"]["serverUrl"] == httpbin.url and integration["openapi"]["specVersion"] == "2.0"
    assert integration["auth"] == {"type": "apiKey", "in": "header", "name": "X-Echo-Key", "header": "X-Echo-Key"}
    ops = {op["id"]: op for op in integration["operations"]}
    post = ops["anything.post"]                                     # generated: no operationId
    assert post["requestBody"]["schema"]["required"] == ["text"]
    assert post["requestBody"]["schema"]["properties"]["reply"] == {"$ref": "#/definitions/Message"}  # cycle
    assert post["requestBody"]["schema"]["properties"]["created"]["example"] == "2024-01-01"
    assert {(p["name"], p["location"]) for p in post["parameters"]} == {("lang", "query"), ("X-Trace-Tag", "header")}
    assert ops["form.put"]["requestBody"]["contentType"] == "application/x-www-form-urlencoded"

    # the detected apiKey auth has no credential for this key: register without auth to invoke
    must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "echo2", "type": "openapi", "openapi": {"specUrl": url}, "auth": {"type": "none"}, "version": 1}))
    status, reply = await invoke(http, org, "echo2.anything.post", params={"lang": "fr", "X-Trace-Tag": "t1"},
                                 body={"text": "bonjour"})
    assert status == 200, reply
    assert reply["data"]["args"] == {"lang": "fr"} and reply["data"]["headers"]["x-trace-tag"] == "t1"
    assert orjson.loads(reply["data"]["data"]) == {"text": "bonjour"}
    status, reply = await invoke(http, org, "echo2.putForm", body={"name": "Ada", "age": 36})
    assert status == 200 and reply["data"]["form"] == {"name": "Ada", "age": "36"}, reply


async def test_openapi_yaml_inline_and_preview(http, org, httpbin):
    spec = f"""
openapi: 3.0.3
info: {{title: Inline YAML, version: "2"}}
servers: [{{url: "{httpbin.url}/{{base}}", variables: {{base: {{default: anything}}}}}}]
components:
  parameters:
    Limit: {{name: limit, in: query, schema: {{type: integer}}}}
  securitySchemes:
    bearerAuth: {{type: http, scheme: bearer}}
security: [{{bearerAuth: []}}]
paths:
  /pets/{{petId}}:
    parameters:
      - {{name: petId, in: path, required: true, schema: {{type: string}}}}
    get:
      operationId: showPetById
      parameters: [{{$ref: "#/components/parameters/Limit"}}]
      responses: {{"200": {{description: ok}}}}
"""
    preview = must(await http.post("/api/integrations/parse/openapi", headers=as_org(org), json={"spec": spec}))
    assert preview["serverUrl"] == f"{httpbin.url}/anything" and preview["authType"] == "bearer"
    op = preview["operations"][0]
    assert op["id"] == "show.pet.by.id" and op["operationId"] == "showPetById"
    assert [(p["name"], p["location"], p["required"]) for p in op["parameters"]] == [
        ("petId", "path", True), ("limit", "query", False)]
    assert preview["info"]["title"] == "Inline YAML"


def large_spec(n: int) -> dict:
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20
    schema = {"type": "object", "properties": {f"field{i}": {"type": "string", "description": filler[:200]}
                                               for i in range(20)}}
    # distinct paths; the last one is httpbinx's echo endpoint, to invoke it
    paths = {}
    for i in range(n):
        paths["/anything" if i == n - 1 else f"/anything/op{i}"] = {"post": {
            "operationId": f"op{i}", "description": filler,
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Big"}}}},
            "responses": {"200": {"description": "ok"}}}}
    return {"openapi": "3.1.0", "info": {"title": "Large", "version": "1"}, "paths": paths,
            "components": {"schemas": {"Big": schema}}}


async def test_a_multi_megabyte_spec_registers_lists_and_invokes(http, org, httpbin, documents, worker):
    spec = large_spec(1500)
    raw = orjson.dumps(spec)
    assert len(raw) > 1.9 * 1024 * 1024      # about the size of OpenAI's own spec
    url = documents.serve("/specs/large.json", raw, "application/json")
    reply = must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "large", "type": "openapi", "openapi": {"specUrl": url, "serverUrl": httpbin.url}}))
    assert reply["operationCount"] == 1500
    ops = must(await http.get("/api/integrations/registry/large/operations", headers=as_org(org)))["operations"]
    assert len(ops) == 1500 and ops[-1]["requestBody"]["schema"]["properties"]["field3"]["type"] == "string"
    status, body = await invoke(http, org, "large.op1499", body={"field0": "x"})
    assert status == 200 and orjson.loads(body["data"]["data"]) == {"field0": "x"}, body
    # the KV record stays small; the operations live in the object store
    entry = await worker.services.registry_store.fetch(org, "large")
    assert len(entry.to_json()) < 4096 and entry.doc

    # and the same spec inline, in a request body above the NATS payload limit
    reply = must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "large-inline", "type": "openapi", "openapi": {"spec": spec, "serverUrl": httpbin.url}}))
    assert reply["operationCount"] == 1500
    refreshed = must(await http.post("/api/integrations/registry/large-inline/refresh", headers=as_org(org)))
    assert refreshed["operationCount"] == 1500 and refreshed["integration"]["version"] == 2
