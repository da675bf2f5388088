"""What Anthropic's Messages API does with each canonical parameter (see `providers.params`)."""

from stellara.providers.params import ParamPolicy, ParamRule
from stellara.schema.chat import ResponseFormat

PARAMS = ParamPolicy(
    {
        "temperature": ParamRule(
            "droppable",
            "1 is Anthropic's maximum and its default, at which it samples when a larger value "
            "is dropped; not sent with `anthropic_version` 2026-10-21 or later, which refuses it",
            at_most=1.0,
        ),
        "top_p": ParamRule(
            "passed", "not sent with `anthropic_version` 2026-10-21 or later, which refuses it"
        ),
        "n": ParamRule("refused", "one answer per request", same_as_absent=(1,)),
        "stop": ParamRule("translated", "`stop_sequences`"),
        "max_tokens": ParamRule(
            "passed", "Anthropic requires it: `default_max_tokens` if not given"
        ),
        "max_completion_tokens": ParamRule("translated", "`max_tokens`"),
        "presence_penalty": ParamRule("droppable", same_as_absent=(0,)),
        "frequency_penalty": ParamRule("droppable", same_as_absent=(0,)),
        "logit_bias": ParamRule("droppable", same_as_absent=({},)),
        "logprobs": ParamRule("droppable", same_as_absent=(False,)),
        "top_logprobs": ParamRule("droppable", same_as_absent=(0,)),
        "seed": ParamRule("droppable"),
        "user": ParamRule("translated", "`metadata.user_id`"),
        "tools": ParamRule("translated", "`tools` with `input_schema`"),
        "tool_choice": ParamRule("translated", "`tool_choice`: `auto`, `any`, `tool`, `none`"),
        "parallel_tool_calls": ParamRule(
            "translated", "`false`: `tool_choice.disable_parallel_tool_use`"
        ),
        "response_format": ParamRule(
            "translated",
            "a forced answer tool whose input is the answer (the schema as its input schema), "
            "given back as the message text",
            same_as_absent=(ResponseFormat("text"),),
        ),
        "reasoning_effort": ParamRule(
            "translated",
            "`thinking` with a budget: minimal 1024, low 2048, medium 8192, high 16384, xhigh "
            "32768 tokens (`none`: no thinking)",
        ),
        "thinking": ParamRule("passed", "extended thinking (`enabled`, `adaptive`, `disabled`)"),
        "unknown_params": ParamRule(
            "droppable",
            "fields OpenAI's schema does not declare: only OpenAI-type providers are sent them",
        ),
        "top_k": ParamRule(
            "passed", "not sent with `anthropic_version` 2026-10-21 or later, which refuses it"
        ),
        "verbosity": ParamRule("droppable"),
        "service_tier": ParamRule("droppable", "Anthropic's `service_tier` takes other values"),
        "store": ParamRule("droppable", "OpenAI's stored completions", same_as_absent=(False,)),
        "metadata": ParamRule("droppable", "OpenAI's stored-completion tags", same_as_absent=({},)),
        "modalities": ParamRule("droppable", "text output only", same_as_absent=(["text"],)),
        "audio": ParamRule("refused", "no audio output"),
        "prediction": ParamRule("droppable", "Predicted Outputs only make answers faster"),
        "web_search_options": ParamRule("droppable", "web search is not translated"),
        "prompt_cache_key": ParamRule("droppable", "Anthropic caches by `cache_control`"),
        "safety_identifier": ParamRule(
            "translated", "`metadata.user_id`, when `user` is not given"
        ),
    }
)
