"""Kafka streams managed with Cypher clauses: catalog, engine, writers, transforms, handler."""
