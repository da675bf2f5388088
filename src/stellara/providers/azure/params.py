"""Azure OpenAI speaks OpenAI's wire format: every parameter goes as the client sent it."""

from stellara.providers.params import EMBEDDING_POLICY_PARAMS, ParamPolicy

PARAMS = ParamPolicy.relaying_all("relayed as sent; the deployment's `api_version` decides")

EMBEDDING_PARAMS = ParamPolicy.relaying_all(
    "relayed as sent; the deployment's `api_version` decides", params=EMBEDDING_POLICY_PARAMS
)
