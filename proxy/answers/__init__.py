"""What the proxy answers itself: the router that picks those queries out, the connect-time
system queries and the routing table, stream clauses (and how they behave in transactions), and
SHOW / TERMINATE TRANSACTIONS."""
