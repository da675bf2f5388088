import hashlib

import pytest
from pydantic import SecretStr

from stellara.config.models import KeyConfig
from stellara.errors import AuthenticationError
from stellara.pipeline.auth import Authenticator, Principal, key_digest

ALICE_KEY = "sk-alice-key-000001"
BOB_KEY = "sk-bob-key-000002"
MASTER_KEY = "sk-master-key-999"


def keys() -> list[KeyConfig]:
    return [
        KeyConfig(key=SecretStr(ALICE_KEY), user="alice"),
        KeyConfig(key=SecretStr(BOB_KEY), user="bob", models=["cheap", "fast"]),
    ]


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(MASTER_KEY, keys())


def test_authenticate_static_key_gives_principal(auth):
    principal = auth.authenticate(ALICE_KEY)
    assert principal.user == "alice"
    assert principal.allowed_models is None
    assert principal.is_master is False
    assert principal.key_id == key_digest(ALICE_KEY)[:12]


def test_authenticate_static_key_with_models(auth):
    principal = auth.authenticate(BOB_KEY)
    assert principal.user == "bob"
    assert principal.allowed_models == frozenset({"cheap", "fast"})


def test_authenticate_distinct_keys_have_distinct_key_ids(auth):
    assert auth.authenticate(ALICE_KEY).key_id != auth.authenticate(BOB_KEY).key_id


def test_principal_may_use_unrestricted():
    principal = Principal("alice", "k1")
    assert principal.may_use("anything")


def test_principal_may_use_restricted():
    principal = Principal("bob", "k2", frozenset({"cheap"}))
    assert principal.may_use("cheap")
    assert not principal.may_use("smart")


def test_principal_empty_allowed_models_allows_nothing():
    assert not Principal("carol", "k3", frozenset()).may_use("cheap")


def test_authenticate_master_key(auth):
    principal = auth.authenticate(MASTER_KEY)
    assert principal.is_master is True
    assert principal.allowed_models is None
    assert auth.is_master(MASTER_KEY) is True


def test_is_master_false_for_user_key_and_missing(auth):
    assert auth.is_master(ALICE_KEY) is False
    assert auth.is_master(None) is False
    assert auth.is_master("") is False


def test_is_master_false_without_master_key():
    assert Authenticator(None, keys()).is_master(MASTER_KEY) is False


@pytest.mark.parametrize("master", [None, ""])
def test_authenticate_without_master_key_rejects_it(master):
    auth = Authenticator(master, keys())
    with pytest.raises(AuthenticationError):
        auth.authenticate(MASTER_KEY)
    with pytest.raises(AuthenticationError):
        auth.authenticate("")


@pytest.mark.parametrize("token", [None, ""])
def test_authenticate_missing_key(auth, token):
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate(token)
    assert info.value.status_code == 401
    assert "Missing API key" in info.value.message


@pytest.mark.parametrize("token", ["sk-wrong", ALICE_KEY + "x", ALICE_KEY[:-1], MASTER_KEY.upper()])
def test_authenticate_wrong_key(auth, token):
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate(token)
    assert info.value.status_code == 401
    assert info.value.message == "Invalid API key."
    assert token not in info.value.message


def test_authenticator_add_accepts_new_key(auth):
    principal = Principal("dave", "demo", frozenset({"cheap"}))
    auth.add("sk-runtime-key-1", principal)
    assert auth.authenticate("sk-runtime-key-1") is principal
    assert auth.authenticate(ALICE_KEY).user == "alice"


def test_key_digest_is_sha256_hex():
    assert key_digest("abc") == hashlib.sha256(b"abc").hexdigest()


def test_authenticator_holds_static_keys_only_as_digests(auth):
    auth.add("sk-runtime-key-1", Principal("dave", "demo"))
    held = repr(vars(auth))
    for plaintext in (ALICE_KEY, BOB_KEY, "sk-runtime-key-1"):
        assert plaintext not in held
    assert key_digest(ALICE_KEY) in held
    assert key_digest("sk-runtime-key-1") in held


def test_authenticator_keeps_no_plaintext_master_key() -> None:
    master = "sk-master-plaintext-check-123"
    auth = Authenticator(master, [])
    assert master not in repr(vars(auth))
    assert auth.authenticate(master).is_master
