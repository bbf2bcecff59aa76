"""WatchLLM: an OpenAI-compatible LLM gateway running a YAML-declared chain of plugins."""
from .call import ApiKeyInfo, Call, Endpoint, Project, StashKey, Target, Usage
from .errors import GatewayError, ProviderError
from .pipeline import Handler, Middleware, build_chain
from .plugin import Provider, Services, Tool
from .reply import Chunk, Outcome, Reply

__version__ = "0.1.0"

__all__ = [
    "ApiKeyInfo", "Call", "Chunk", "Endpoint", "GatewayError", "Handler", "Middleware", "Outcome",
    "Project", "Provider", "ProviderError", "Reply", "Services", "StashKey", "Target", "Tool", "Usage",
    "build_chain", "__version__",
]
