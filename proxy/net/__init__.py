"""The network side: the listener (transport sniffing, TLS and WebSocket on the Bolt port, the
Bolt handshake) and the connections the proxy opens to Bolt backends."""
