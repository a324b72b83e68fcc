"""The Symbia Identity service as a dependency: its HTTP client and the credential resolver
that reads personal and org-wide provider keys from it (Identity mode, IDENTITY_SERVICE_URL)."""
