"""The generator's own figures next to the downstream benchmark."""

from __future__ import annotations

from pathlib import Path

from ..data.dataset import LabelledImages


def evaluate_generator(gen, lt_train: LabelledImages, test: LabelledImages, reference, train_full: LabelledImages,
                       n: int, out: Path, progress: bool, min_steps: int = 1500) -> dict:
    """The generator's figures (FID, KID, precision/recall, class fidelity, CAS, memorisation of the
    long-tailed images it was trained on) in the reference classifier's feature space. CAS per class
    bounds what its images can teach a classifier about that class. Without ``reference``, one is
    trained on ``train_full`` (the training split, never the test images) with a balanced loss and at
    least ``min_steps`` (the classifiers' minimum), and cached."""
    import dataclasses

    from ..eval import EvalProtocol, ReferenceFeatures, cached_reference_classifier, evaluate, save_result
    from ..eval.reference import AUTO_FIT

    if reference is None:
        fit = dataclasses.replace(AUTO_FIT, min_steps=min_steps)
        reference = cached_reference_classifier(train_full, test, fit, progress=progress)
    n = max(n - n % lt_train.num_classes, 4 * lt_train.num_classes)
    result = evaluate(gen.net, gen.config, lt_train, test, reference, ReferenceFeatures(reference),
                      EvalProtocol(n=n, cas=True), progress=progress)
    save_result(result, lt_train, out)
    o = result["overall"]
    # a judge near chance: its figures are None and "judge_refusal" says why (ganaug/eval/judge_check.py)
    return {"judge_refusal": result["judge"].get("refusal"),
            "reference_real_test_balanced_accuracy": result["judge"]["balanced_accuracy"],
            "fid": o["fid"], "kid": o["kid"], "precision": o["precision"], "recall": o["recall"],
            "class_fidelity": o["class_fidelity"], "cas": o["cas"],
            "class_fidelity_per_class": [r["class_fidelity"] for r in result["per_class"]],
            "cas_per_class": [r["cas"] for r in result["per_class"]],
            "precision_per_class": [r.get("precision") for r in result["per_class"]],
            "recall_per_class": [r.get("recall") for r in result["per_class"]],
            "memorisation_flagged_classes": result["memorisation"]["flagged_classes"],
            "reference_real_test_accuracy": reference.config.real_test_accuracy,
            "n": n, "report": str(out / "report.md")}
