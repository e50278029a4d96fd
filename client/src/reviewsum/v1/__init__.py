"""Generated reviewsum.v1 stubs (made at install time from protos/)."""
