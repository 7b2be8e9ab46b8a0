"""The bus every domain speaks: the xenstore wire codec, paths and permissions, the client
layer, the XenbusState table and the exec protocol. Imports nothing else of the project, so
guests carry it (the daemon is `dom0.xenstored`)."""
