"""The xenstore daemon for hosts without Xen: the tree, the server, the journal, the process."""
