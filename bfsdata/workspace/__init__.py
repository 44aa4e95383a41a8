"""The workspace around the store: manifests, provenance, lock, atomic writes, parallel runs."""
