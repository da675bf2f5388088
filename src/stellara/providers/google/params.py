"""What Gemini's `generateContent` does with each canonical parameter (see `providers.params`)."""

from stellara.providers.params import EMBEDDING_POLICY_PARAMS, ParamPolicy, ParamRule

PARAMS = ParamPolicy(
    {
        "temperature": ParamRule("translated", "`generationConfig.temperature`"),
        "top_p": ParamRule("translated", "`generationConfig.topP`"),
        "unknown_params": ParamRule(
            "droppable",
            "fields OpenAI's schema does not declare: only OpenAI-type providers are sent them",
        ),
        "top_k": ParamRule("translated", "`generationConfig.topK`"),
        "n": ParamRule("translated", "`generationConfig.candidateCount`"),
        "stop": ParamRule("translated", "`generationConfig.stopSequences`"),
        "max_tokens": ParamRule("translated", "`generationConfig.maxOutputTokens`"),
        "max_completion_tokens": ParamRule("translated", "`generationConfig.maxOutputTokens`"),
        "presence_penalty": ParamRule("translated", "`generationConfig.presencePenalty`"),
        "frequency_penalty": ParamRule("translated", "`generationConfig.frequencyPenalty`"),
        "logit_bias": ParamRule("droppable", same_as_absent=({},)),
        "logprobs": ParamRule(
            "translated",
            "`generationConfig.responseLogprobs`; `logprobsResult` comes back as "
            "`choices[].logprobs`",
        ),
        "top_logprobs": ParamRule(
            "translated", "`generationConfig.logprobs` (with `logprobs: true`, as at OpenAI)"
        ),
        "seed": ParamRule("translated", "`generationConfig.seed`"),
        "user": ParamRule("droppable", "no end-user field"),
        "tools": ParamRule(
            "translated", "`tools[].functionDeclarations` (JSON Schema on Gemini 2.5 and later)"
        ),
        "tool_choice": ParamRule("translated", "`toolConfig.functionCallingConfig`"),
        "parallel_tool_calls": ParamRule(
            "droppable",
            "Gemini may always call several functions at once",
            same_as_absent=(True,),
        ),
        "response_format": ParamRule(
            "translated",
            "`responseMimeType` with `responseJsonSchema` (Gemini 2.5 and later) or "
            "`responseSchema` (earlier: a schema it cannot express is refused)",
        ),
        "reasoning_effort": ParamRule(
            "translated",
            "`generationConfig.thinkingConfig`: a budget on Gemini 2.5, a level on Gemini 3; "
            "refused on earlier models (but `none`)",
        ),
        "thinking": ParamRule(
            "droppable",
            "Anthropic's thinking budget; Gemini's thinking is asked with `reasoning_effort`",
        ),
        "verbosity": ParamRule("droppable"),
        "service_tier": ParamRule("droppable"),
        "store": ParamRule("droppable", "OpenAI's stored completions", same_as_absent=(False,)),
        "metadata": ParamRule("droppable", "OpenAI's stored-completion tags", same_as_absent=({},)),
        "modalities": ParamRule("droppable", "text output only", same_as_absent=(["text"],)),
        "audio": ParamRule("refused", "no audio output"),
        "prediction": ParamRule("droppable", "Predicted Outputs only make answers faster"),
        "web_search_options": ParamRule("droppable", "Google Search grounding is not translated"),
        "prompt_cache_key": ParamRule("droppable"),
        "safety_identifier": ParamRule("droppable", "no end-user field"),
    }
)

EMBEDDING_PARAMS = ParamPolicy(
    {
        "encoding_format": ParamRule(
            "translated", "`base64`: the gateway encodes Gemini's floats as OpenAI does"
        ),
        "dimensions": ParamRule("translated", "`outputDimensionality`"),
        "user": ParamRule("droppable", "no end-user field"),
    },
    params=EMBEDDING_POLICY_PARAMS,
)
