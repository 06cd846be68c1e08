"""ZMQ serving of the streaming agent: wire protocol, server with sessions, client (see README.md)."""
