from stellara._secrets import SecretScrubber, masked


def test_scrubber_masks_every_known_secret_longest_first() -> None:
    scrub = SecretScrubber(["sk-provider-key-0123456789", "sk-provider-key-0123456789-extra", "k"])
    text = "bad key sk-provider-key-0123456789-extra and sk-provider-key-0123456789; k stays"
    assert scrub(text) == (
        f"bad key {masked('sk-provider-key-0123456789-extra')} and "
        f"{masked('sk-provider-key-0123456789')}; k stays"
    )
    assert "0123456789" not in scrub(text)


def test_masked_keeps_only_a_recognisable_prefix_and_suffix() -> None:
    assert masked("sk-abcdefghijklmnop") == "sk-…mnop"
