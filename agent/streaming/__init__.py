"""Streaming inference: a KV cache across turns, windows with stored memory, batched sessions."""

from agent.streaming.agent import StreamingAgent
from agent.streaming.config import CacheScheme, Decoding, DraftPolicy, StreamingConfig
from agent.streaming.session import ActOutput, AgentSession, Observation

__all__ = ["ActOutput", "AgentSession", "CacheScheme", "Decoding", "DraftPolicy", "Observation", "StreamingAgent", "StreamingConfig"]
