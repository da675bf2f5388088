"""OpenAI's wire format is the canonical one: every parameter goes as the client sent it."""

from stellara.providers.params import EMBEDDING_POLICY_PARAMS, ParamPolicy

PARAMS = ParamPolicy.relaying_all(
    "relayed as sent; an OpenAI-compatible server decides what it takes"
)

EMBEDDING_PARAMS = ParamPolicy.relaying_all(
    "relayed as sent; an OpenAI-compatible server decides what it takes",
    params=EMBEDDING_POLICY_PARAMS,
)
