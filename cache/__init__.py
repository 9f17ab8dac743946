"""The store: blobs, entries, catalog, freshness policy, single flight, serving, GC."""
