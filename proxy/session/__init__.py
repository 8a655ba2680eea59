"""One session per client connection: a thin I/O shell around ``bolt.connection.
ServerConnection``. ``core`` is what both kinds share; ``relay`` forwards to a Bolt server,
``local`` answers on a query backend (FalkorDB)."""
