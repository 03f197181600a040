"""The label classes of a run's batches taken together, before a training job is spent on them.

Validation judges each batch alone (``shared.validation``: a binary label with a third class fails its batch), so
two batches of a binary label that declares no categories, one of ``yes``/``no`` and one of ``yes``/``maybe``, each
pass, and the run's training job would stop on the three classes (training_jobs/data.py, exit 2). prepare_training
reads the batches' profiles anyway; this names the conflict from them, with the batches that hold each class, so
the run ends before any job starts and says which upload to fix.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.profile import DatasetProfile
from shared.spec import DataContract, Task, label_class

#: Batches named per class in the message; the rest are counted.
MAX_BATCHES_NAMED = 3
#: From here on a float (a numeric profile's min and max) cannot hold every whole number.
EXACT_FLOAT_INTS = 2**53


def batch_label_classes(contract: DataContract, profile: DatasetProfile) -> frozenset[str] | None:
    """The label classes a batch's profile holds, as training spells them; None when the profile cannot tell.

    Validation counts them (``label_classes``). A profile without that count (kept from before it existed, or of a
    label with more values than validation counts) is read from the label's column: a text or bool label's profile
    counts its values (None past its top_k); a numeric one keeps only a summary, but its min and max are values it
    holds: an int label whose max is at most its min + 1 holds exactly those (the usual 0/1 label), and any label
    whose min is its max holds that one; other spans are not known."""
    if profile.label_classes is not None:
        return frozenset(profile.label_classes)
    column = profile.columns.get(contract.label)
    if column is None:
        return None
    if column.categorical is not None:
        if column.categorical.other:
            return None
        return frozenset(label_class(value, column.type) for value in column.categorical.counts)
    numeric = column.numeric
    if numeric is None or not numeric.count:
        return frozenset() if column.rows == column.nulls else None  # every row unlabelled: no class
    if max(abs(numeric.min), abs(numeric.max)) >= EXACT_FLOAT_INTS:
        return None  # the summary's floats no longer tell neighbouring whole numbers apart
    if numeric.min == numeric.max or (column.type == "int" and numeric.max - numeric.min == 1):
        return frozenset({label_class(numeric.min, column.type), label_class(numeric.max, column.type)})
    return None


def binary_label_problem(
    contract: DataContract, task: Task, classes_by_batch: Mapping[str, frozenset[str] | None]
) -> str | None:
    """Why the batches together cannot train a binary model, as training would say it, or None: more than two label
    classes, no row of the positive class, or one class only. None too when a batch's classes are not known (its
    profile does not list them): training then judges."""
    label = next((c for c in contract.columns if c.name == contract.label), None)
    if task != "binary" or label is None or not classes_by_batch or None in classes_by_batch.values():
        return None
    holders: dict[str, list[str]] = {}
    for batch, classes in classes_by_batch.items():
        for cls in sorted(classes or ()):
            holders.setdefault(cls, []).append(batch)
    positive = label_class(contract.positive_class, label.type)
    fix = "Fix the labels and upload the batches again"
    if len(holders) > 2:
        problem = f"hold {len(holders)} classes of the binary label {contract.label!r}"
        fix += (
            ", declare the label's two categories in the spec (validation then refuses a batch holding another "
            "value), or set task: multiclass"
        )
    elif positive not in holders:
        problem = f"hold no row of the positive class {positive!r} of {contract.label!r}"
        fix += ", or set data.positive_class to the label value that means positive"
    elif len(holders) < 2:
        problem = f"hold one class of {contract.label!r} only"
    else:
        return None

    def named(batches: list[str]) -> str:
        shown = ", ".join(batches[:MAX_BATCHES_NAMED])
        return shown + (f" and {len(batches) - MAX_BATCHES_NAMED} more" if len(batches) > MAX_BATCHES_NAMED else "")

    listed = "; ".join(f"{cls!r} in {named(batches)}" for cls, batches in sorted(holders.items()))
    return f"the run's batches together {problem} ({listed}): training would stop on them. {fix}"
