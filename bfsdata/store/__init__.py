"""The zarr store: where it lives, its arrays, and the shard files bfsdata writes and reads."""
