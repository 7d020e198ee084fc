"""The start-up checks on the served model, in-process, and the canaries for why they exist:
BentoML's `BentoModel` turns to BentoCloud for a tag missing locally, and its supervisor
restarts a worker that fails for ever."""

from __future__ import annotations

from pathlib import Path

import bentoml
import pytest
from bentoml.exceptions import BentoMLException
from bentoml.serving import create_watcher, running_inside_container

from credit_risk.model_store import RegistryError, not_found_message
from credit_risk.promotion import CHALLENGER_REMEDY
from credit_risk.serving.workarounds.model_reference import (
    LocalModel,
    ModelNotServableError,
    refuse_unservable_model,
    served_model,
)

MISSING = "credit_risk:nosuchversion"

# --- canaries ----------------------------------------------------------------------------------


def test_bentomls_model_reference_still_asks_the_cloud_for_a_tag_missing_locally(
    isolated_home: Path,
) -> None:
    # Why LocalModel exists: upstream resolves a missing tag through BentoCloud (a network call
    # wherever a cloud context is configured) and then fails saying nothing of how to get one.
    for lookup in (lambda m: m.resolve(), lambda m: m.to_info()):
        with pytest.raises(BentoMLException) as caught:
            lookup(bentoml.models.BentoModel(MISSING))
        assert "failed to fetch from remote" in str(caught.value), (
            f"BentoModel no longer turns to the cloud for a missing tag ({caught.value}): "
            "revisit LocalModel in credit_risk/serving/workarounds/model_reference.py"
        )
        assert "train" not in str(caught.value)


def test_bentomls_supervisor_still_respawns_a_worker_that_exits() -> None:
    # Why an unservable model stops the whole server: the supervisor respawns any worker that
    # exits, for ever (tests/service/test_faults.py watched it), outside a container.
    if running_inside_container():
        pytest.skip("BentoML does not respawn workers inside a container")
    watcher = create_watcher("canary", ["-c", "pass"])
    assert watcher.respawn, (
        "BentoML's supervisor no longer respawns exited workers: revisit _stop_supervisor in "
        "credit_risk/serving/workarounds/model_reference.py"
    )


# --- served_model and LocalModel ------------------------------------------------------------------


def test_a_malformed_tag_is_refused_in_one_line() -> None:
    with pytest.raises(ModelNotServableError, match=r"model tag 'no good!' is not valid") as caught:
        served_model("no good!")
    assert "\n" not in str(caught.value)


def test_a_missing_tag_is_refused_from_the_local_store_alone(isolated_home: Path) -> None:
    reference = served_model(MISSING)
    assert isinstance(reference, LocalModel)
    for lookup in (reference.resolve, reference.to_info):
        with pytest.raises(ModelNotServableError) as caught:
            lookup()
        assert "failed to fetch from remote" not in str(caught.value)
        assert "not found in the BentoML store" in str(caught.value)
    with pytest.raises(ModelNotServableError, match="not found") as caught:
        reference.resolve(base_path=isolated_home / "elsewhere")  # a build's copy: no load
    assert str(caught.value) == not_found_message(MISSING)


def test_a_missing_or_malformed_challenger_names_the_challengers_remedies(
    isolated_home: Path,
) -> None:
    # the champion's remedy ("set CREDIT_RISK_MODEL") would change the wrong model
    lookups = [served_model(MISSING, challenger=True).resolve]
    lookups.append(served_model(MISSING, challenger=True).to_info)
    lookups.append(lambda: served_model("no good!", challenger=True))
    for lookup in lookups:
        with pytest.raises(ModelNotServableError) as caught:
            lookup()
        message = str(caught.value)
        assert message.startswith("challenger: model ")
        assert message.endswith(CHALLENGER_REMEDY)
        assert "CREDIT_RISK_MODEL" not in message
        assert "\n" not in message
    assert "CREDIT_RISK_CHALLENGER=none" in CHALLENGER_REMEDY
    assert "credit-risk retire-challenger" in CHALLENGER_REMEDY


def test_a_stored_model_resolves_and_is_recorded_like_bentomls(model_tag: str) -> None:
    reference = served_model(model_tag)
    assert str(reference.resolve().tag) == model_tag
    assert str(reference.to_info().tag) == model_tag
    upstream = bentoml.models.BentoModel(model_tag)
    assert reference.to_info() == upstream.to_info()


def test_a_stored_model_that_cannot_be_served_is_refused_before_any_worker(
    isolated_home: Path,
) -> None:
    with bentoml.models.create("credit_risk_unservable") as broken:  # no files, no metadata
        pass
    reference = served_model(str(broken.tag))
    with pytest.raises(ModelNotServableError, match="credit_risk_unservable") as caught:
        reference.resolve()
    assert "\n" not in str(caught.value)


def test_outside_a_server_worker_the_refusal_propagates() -> None:
    with pytest.raises(RegistryError, match="gone"), refuse_unservable_model():
        raise RegistryError("gone")
    with refuse_unservable_model():  # nothing raised, nothing done
        pass
