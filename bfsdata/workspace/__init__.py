"""The workspace around the store: paths, manifests, provenance, lock, atomic writes, parallel
runs, and the session a stage holds them in."""
