"""xenstore: the wire codec, the tree, the daemon for hosts without Xen, and the client layer."""
