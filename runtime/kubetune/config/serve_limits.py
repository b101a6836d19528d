"""What one client may take from the server: body size, prompt size, sequences, queue, connections, timeouts.

Every bound has a default that is safe for a shared endpoint and is set under ``limits:`` in the serve config
(or ``spec.limits`` of an InferenceService). Torch-free.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServerLimits(BaseModel):
    """Bounds on what a request or a connection may cost the server; beyond them it answers 4xx/5xx at once."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body; larger is a 413, "
                                "refused before more than this many bytes are read.")
    max_prompt_chars: int | None = Field(None, ge=1, description="Largest prompt in characters, checked before "
                                         "tokenizing (unset: 16 characters per token of the context).")
    max_sequences_per_request: int = Field(64, ge=1, description="Prompts x n of one request; more is a 400.")
    max_queued_sequences: int = Field(256, ge=1, description="Sequences accepted (generating or waiting) across "
                                      "all requests; a request that would pass it gets a 429.")
    max_connections: int = Field(512, ge=1, description="Open client connections; more are closed on accept.")
    read_timeout_seconds: float = Field(15.0, gt=0, description="Time a client has to send its request headers "
                                        "(idle connections included), and between parts of its body (408).")
    keep_alive_seconds: float = Field(5.0, gt=0, description="Idle time before a keep-alive connection is "
                                      "closed.")
    shutdown_seconds: float = Field(15.0, ge=0, description="On SIGTERM, how long running requests may finish "
                                    "before they are cancelled.")
    max_image_bytes: int = Field(4 * 1024 * 1024, ge=1, description="Largest image of a chat request, as encoded "
                                 "bytes (a 400 beyond).")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="Largest image in pixels (width x height), "
                                  "checked before decoding (a 400 beyond).")
    max_images_per_request: int = Field(8, ge=0, description="Images in one chat request (a 400 beyond).")

    def prompt_chars(self, max_model_len: int) -> int:
        """The prompt size bound for a model whose context is ``max_model_len`` tokens."""
        return self.max_prompt_chars or 16 * max_model_len
