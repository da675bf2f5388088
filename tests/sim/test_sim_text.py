import math

import pytest

from stellara.sim import text


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_seed_of_is_stable_and_separates_parts():
    assert text.seed_of(b"ab", b"c") == text.seed_of(b"ab", b"c")
    assert text.seed_of(b"ab", b"c") != text.seed_of(b"a", b"bc")
    assert len(text.seed_of(b"x")) == 16


def test_seed_of_known_value_survives_restarts():
    # A fixed digest: a change here silently changes every simulated answer.
    assert text.seed_of(b"hello").hex() == "52dd49439490bc091012031436a72002"
    assert text.prose_pieces(text.seed_of(b"hello"), "", 3) == ["under", " tokens", " retries."]


def test_count_tokens_rounds_up_per_four_chars():
    assert text.count_tokens("") == 0
    assert text.count_tokens("abc") == 1
    assert text.count_tokens("abcd") == 1
    assert text.count_tokens("abcde") == 2


def test_split_pieces_round_trips_text():
    source = "Hello,  world\nhow are you?"
    pieces = text.split_pieces(source)
    assert pieces == ["Hello,", "  world", "\nhow", " are", " you?"]
    assert "".join(pieces) == source


def test_prose_pieces_same_seed_same_answer():
    seed = text.seed_of(b"prompt")
    assert text.prose_pieces(seed, "Hi there", 30) == text.prose_pieces(seed, "Hi there", 30)


def test_prose_pieces_other_seed_other_filler():
    first = text.prose_pieces(text.seed_of(b"one"), "", 24)
    second = text.prose_pieces(text.seed_of(b"two"), "", 24)
    assert first != second


def test_prose_pieces_starts_with_lead_and_has_requested_length():
    pieces = text.prose_pieces(text.seed_of(b"p"), "  Tell me a joke", 10)
    assert len(pieces) == 10
    assert "".join(pieces).startswith("Tell me a joke ")
    assert pieces[-1].endswith(".")


def test_prose_pieces_long_answer_spans_hash_blocks():
    pieces = text.prose_pieces(text.seed_of(b"p"), "", 200)
    assert len(pieces) == 200
    assert pieces[:64] != pieces[64:128]


def test_prose_pieces_lead_longer_than_answer_is_cut():
    assert text.prose_pieces(b"s", "one two three four", 2) == ["one", " two."]


def test_echo_of_keeps_first_words():
    assert text.echo_of("  What   is the weather in Paris today, please?") == (
        "What is the weather in Paris"
    )


def test_finish_without_limits_stops():
    completion = text.finish(["a", " b"], max_tokens=None, stop=[])
    assert completion == text.Completion(("a", " b"), "stop")
    assert completion.text == "a b"


def test_finish_max_tokens_cuts_with_length():
    completion = text.finish(["a", " b", " c"], max_tokens=2, stop=[])
    assert completion.pieces == ("a", " b")
    assert completion.finish_reason == "length"


def test_finish_max_tokens_equal_to_length_stops():
    assert text.finish(["a", " b"], max_tokens=2, stop=[]).finish_reason == "stop"


def test_finish_stop_cuts_before_earliest_stop_string():
    completion = text.finish(
        ["one", " two", " three", " four"], max_tokens=None, stop=["four", "hr"]
    )
    assert completion.text == "one two t"
    assert completion.finish_reason == "stop"


def test_finish_stop_at_piece_boundary_keeps_whole_pieces():
    completion = text.finish(["one", " two", " three"], max_tokens=None, stop=[" three"])
    assert completion.pieces == ("one", " two")


def test_finish_stop_beyond_max_tokens_reports_length():
    completion = text.finish(["one", " two", " three"], max_tokens=2, stop=["three"])
    assert completion.text == "one two"
    assert completion.finish_reason == "length"


def test_finish_empty_stop_string_is_ignored():
    assert text.finish(["a"], max_tokens=None, stop=[""]).text == "a"


def test_sample_object_fills_each_json_type():
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"type": "string"},
            "days": {"type": "integer"},
            "ratio": {"type": "number"},
            "metric": {"type": "boolean"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            "note": {"type": ["null", "string"]},
            "kind": {"const": "fixed"},
            "choice": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        },
        "required": ["city", "extra"],
    }
    value = text.sample_object(schema, ["weather", "in", "Paris", "France"])
    assert value == {
        "city": "France",
        "country": "Paris",
        "days": 1,
        "ratio": 1,
        "metric": True,
        "unit": "celsius",
        "tags": ["in"],
        "where": {"lat": 1},
        "note": "in",
        "kind": "fixed",
        "choice": 1,
        "extra": "example",
    }


def test_sample_object_follows_refs_into_defs_as_pydantic_writes_them():
    schema = {
        "type": "object",
        "properties": {
            "place": {"$ref": "#/$defs/Place"},
            "sky": {"$ref": "#/$defs/Sky"},
            "stops": {"type": "array", "items": {"$ref": "#/$defs/Place"}},
            "lost": {"$ref": "#/$defs/Missing"},
        },
        "$defs": {
            "Place": {"type": "object", "properties": {"city": {"type": "string"}}},
            "Sky": {"enum": ["clear", "cloudy"]},
        },
    }
    value = text.sample_object(schema, ["Paris"])
    assert value == {
        "place": {"city": "Paris"},
        "sky": "clear",
        "stops": [{"city": "Paris"}],
        "lost": "Paris",  # an unresolvable ref reads as no type: a string
    }


def test_sample_value_stops_on_self_referencing_refs():
    schema = {
        "type": "object",
        "properties": {"next": {"$ref": "#"}},
    }
    value = text.sample_object(schema, [])
    depth = 0
    while value:
        value = value["next"]
        depth += 1
    assert 0 < depth <= 8


def test_sample_object_without_words_uses_example():
    assert text.sample_object({"properties": {"q": {"type": "string"}}}, []) == {"q": "example"}


def test_sample_object_empty_schema_is_empty_object():
    assert text.sample_object({}, ["word"]) == {}


def test_sample_value_stops_on_deep_schemas():
    schema: dict[str, object] = {"type": "object", "properties": {}}
    node = schema
    for _ in range(20):
        child: dict[str, object] = {"type": "object", "properties": {}}
        node["properties"] = {"child": child}
        node = child
    value = text.sample_value(schema, [])
    depth = 0
    while value:
        value = value["child"]
        depth += 1
    assert depth < 20


@pytest.mark.parametrize("dimensions", [1, 8, 256, 1536])
def test_embed_is_unit_length(dimensions):
    vector = text.embed("The quick brown fox", dimensions)
    assert len(vector) == dimensions
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)


def test_embed_is_deterministic_and_ignores_case_and_punctuation():
    assert text.embed("Capital of France?", 64) == text.embed("capital of france", 64)


def test_embed_similar_texts_are_closer_than_unrelated_ones():
    base = text.embed("what is the capital of france", 256)
    near = text.embed("what is the capital city of france", 256)
    far = text.embed("how do I bake sourdough bread", 256)
    assert _cosine(base, near) > 0.8
    assert _cosine(base, far) < 0.5


def test_embed_text_without_words_gets_fixed_vector():
    assert text.embed("?!", 4) == [1.0, 0.0, 0.0, 0.0]
