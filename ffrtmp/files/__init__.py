"""Files across machines (docs/files.md): the content-addressed object store and the data channel's peer side."""
