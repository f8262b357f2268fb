"""Where trials live: an Optuna study in SQLite (default) or a shared PostgreSQL database.

Every trial is recorded as it finishes, so a killed search resumes with what it had. A running
trial writes a heartbeat; one that stops beating (its worker was killed) is marked failed by the
next worker that starts a trial and queued again with the same parameters, never lost. A study
remembers its search space, budget and input model: a worker with another one is refused.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from slimkit.errors import ConfigError
from slimkit.search.evaluate import Evaluation

# Attributes a study carries so a second worker (or a resume) can check it searches the same.
IDENTITY_KEYS = ("space", "budget", "inputs", "strategy")


def open_storage(url: str, heartbeat_s: int) -> RDBStorage:
    """An RDB storage with heartbeats; one clear line when the database cannot be reached."""
    if not url.startswith(("sqlite:///", "postgresql://", "postgresql+")):
        raise ConfigError(
            f"storage {url!r} is not sqlite:///path.db or postgresql://user:pass@host/db"
        )
    if url.startswith("postgresql://"):  # psycopg 3 is the driver slimkit installs
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Heartbeat retries are marked experimental; they are what makes killed trials come back.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        return RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True} if "postgresql" in url else None,
            heartbeat_interval=heartbeat_s,
            grace_period=max(2 * heartbeat_s, heartbeat_s + 2),
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
        )
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"storage {_safe(url)} needs the {e.name} package: pip install 'slimkit[postgres]'"
        ) from None
    except Exception as e:  # sqlalchemy's OperationalError and friends: say which database
        reason = str(e).splitlines()[0][:200]
        raise ConfigError(f"cannot open search storage {_safe(url)}: {reason}") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.partition(':')[0]}:***@{tail}"


def open_study(
    storage: RDBStorage,
    name: str,
    directions: list[str],
    identity: dict[str, str],
    sampler: optuna.samplers.BaseSampler,
) -> optuna.Study:
    """Create the study, or join it when it exists with the same identity."""
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except Exception as e:
        raise ConfigError(f"cannot open study {name!r}: {str(e).splitlines()[0][:200]}") from None
    attrs = study.user_attrs
    if not attrs:
        for key in IDENTITY_KEYS:
            study.set_user_attr(key, identity[key])
        return study
    for key in IDENTITY_KEYS:
        if attrs.get(key) != identity[key]:
            raise ConfigError(
                f"study {name!r} already exists with another {key} ({_short(attrs.get(key))} vs "
                f"{_short(identity[key])}): choose another --study name or search the same"
            )
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"study {name!r} exists with other objectives; choose another name")
    return study


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Record:
    """One completed trial: its policy indices and evaluation."""

    number: int
    indices: tuple[int, ...]
    evaluation: Evaluation
    cached: bool


def completed(study: optuna.Study, names: list[str]) -> list[Record]:
    records = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rec = _record(t, names)
        if rec is not None:
            records.append(rec)
    return records


def _record(t: FrozenTrial, names: list[str]) -> Record | None:
    if "accuracy" not in t.user_attrs or any(n not in t.params for n in names):
        return None
    indices = tuple(int(t.params[n]) for n in names)
    evaluation = Evaluation(float(t.user_attrs["accuracy"]), dict(t.user_attrs["resources"]))
    return Record(t.number, indices, evaluation, bool(t.user_attrs.get("cached", False)))


def count_states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'search.db').resolve()}"
