"""Key folders (pipelogic keys) and how a client finds its CurveZMQ credentials."""

import stat

import pytest

from pipelogic.keys import KeyFileError, client_keys, create_broker_key, create_key, list_keys


def test_a_key_folder_holds_private_secrets_and_authorisations(tmp_path):
    d = tmp_path / "keys"
    create_broker_key(d)
    create_key(d, "workers", "w1", ["a", "b"])
    create_key(d, "operators", "ops")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for secret in d.rglob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    keys = {k.name: k for k in list_keys(d)}
    assert keys["w1"].role == "worker" and keys["w1"].vertices == ("a", "b")
    assert keys["ops"].role == "operator" and keys["broker"].role == "broker"
    with pytest.raises(KeyFileError, match="exists already"):
        create_key(d, "workers", "w1")
    with pytest.raises(KeyFileError, match="key name"):
        create_key(d, "workers", "../escape")


def test_a_client_finds_its_key_in_a_folder_by_vertex_or_operator(tmp_path):
    d = tmp_path / "keys"
    create_broker_key(d)
    create_key(d, "workers", "w1")
    assert client_keys({}) is None  # no keys: plain TCP
    worker = client_keys({"PIPELOGIC_KEYS": str(d), "PIPELOGIC_COMPONENT": "w1"})
    assert worker is not None and worker.source.endswith("workers/w1.key_secret")
    with pytest.raises(KeyFileError, match="no key for this client"):
        client_keys({"PIPELOGIC_KEYS": str(d)})  # no operator key yet
    create_key(d, "operators", "ops")
    op = client_keys({"PIPELOGIC_KEYS": str(d)})
    assert op is not None and op.source.endswith("operators/ops.key_secret") and op.server == worker.server
    with pytest.raises(KeyFileError, match="needs both"):
        client_keys({"PIPELOGIC_CURVE_KEY": str(d / "operators" / "ops.key_secret")})
    with pytest.raises(KeyFileError, match="public key file"):
        client_keys(
            {
                "PIPELOGIC_CURVE_KEY": str(d / "operators" / "ops.key"),
                "PIPELOGIC_CURVE_SERVER_KEY": str(d / "broker.key"),
            }
        )


def test_a_worker_whose_key_was_revoked_says_so_and_never_stands_in_with_an_operator_key(tmp_path):
    d = tmp_path / "keys"
    create_broker_key(d)
    create_key(d, "workers", "w1")
    create_key(d, "operators", "up")
    for f in (d / "workers").glob("w1.key*"):
        f.unlink()  # revoked
    with pytest.raises(KeyFileError) as err:
        client_keys({"PIPELOGIC_KEYS": str(d), "PIPELOGIC_COMPONENT": "w1"})
    assert "vertex w1 has no worker key" in str(err.value) and "revoked" in str(err.value)
    assert "pipelogic keys worker" in str(err.value)
    op = client_keys({"PIPELOGIC_KEYS": str(d)})  # an operator's tool still finds its key
    assert op is not None and op.source.endswith("operators/up.key_secret")
