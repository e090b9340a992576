"""The Function's Key Vault secret cache, against the emulator's vault, on an injected clock."""

from __future__ import annotations

import uuid

from hrconnector_core.credentials import VaultValue, secret_credential

from .conftest import TENANT


def test_the_key_vault_secret_cache_expires_after_its_maximum_age(emulator, function_identity, cloud):
    """Within its maximum age the cached value is used (even after a rotation); from that age on
    the vault is read again, so a rotated secret reaches a long-lived instance without a refusal."""
    reader = "ca5eca5e-0000-4000-8000-" + uuid.uuid4().hex[:12]
    emulator.state.register_app(TENANT, reader, "reader-secret")
    emulator.state.vault_readers.add(reader)
    name = "cache-" + uuid.uuid4().hex[:8]
    emulator.state.set_secret(name, "first-value")
    now = [1000.0]
    value = VaultValue(
        emulator.url,
        name,
        secret_credential(TENANT, reader, "reader-secret", cloud),
        max_age=300,
        verify_challenge_resource=False,
        clock=lambda: now[0],
    )

    def vault_reads():
        return emulator.state.counters.get("vault_secret_reads", 0)

    before = vault_reads()
    assert value.get() == "first-value" and vault_reads() == before + 1
    emulator.state.set_secret(name, "second-value")  # rotated in the vault
    now[0] += 299.9
    assert value.get() == "first-value" and vault_reads() == before + 1  # still cached
    now[0] += 0.1  # exactly max_age after the read
    assert value.get() == "second-value" and vault_reads() == before + 2
    now[0] += 299
    assert value.get() == "second-value" and vault_reads() == before + 2
    assert value.get(refresh=True) == "second-value" and vault_reads() == before + 3  # a refusal re-reads at once
    assert value.reads == 3
