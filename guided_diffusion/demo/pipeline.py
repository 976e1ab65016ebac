"""
The demo from data to table, every stage a real script (`stages`):

  1. the digits: the training split as an image folder, the 300 held-out digits as the
     evaluator's reference batch, and as many training digits as samples per row for the floor;
  2. image_train.py: the class-conditional base model with label dropout (`recipe.Recipe`);
  3. classifier_train.py: the guide (a noisy classifier);
  4. one sampling run per table row (`recipe.ROWS`), same seed and balanced labels for all;
  5. evaluator.py against the held-out digits, and the independent pixel judge (what
     `classifier_accuracy.py --judge pixel_knn` prints, run in this process: it needs no network);
  6. the table (`report`), results.md and results.json.
"""

import json
import os
import time

import numpy as np

from ..data import digits
from ..runtime.fileio import atomic_savez, atomic_write
from ..runtime.precision import describe_cpu
from ..scoring.judge import read_labelled_batch
from ..scoring.pixel_judge import digits_judge, label_histogram
from . import report
from .recipe import IMAGE_SIZE, NUM_CLASSES, RANKS, SEED, classifier_flags, model_evaluations, model_flags
from .recipe import row_steps, sampling_flags
from .stages import StageTimes, evaluate, mpi_launcher, run_stage, train


def precision_flags(recipe):
    """--precision for the scripts, or nothing when the recipe leaves it to their default ("")."""
    return dict(precision=recipe.precision) if recipe.precision else {}


def prepare_data(out, num_samples):
    """:return: (training image folder, held-out reference npz, real-floor npz of num_samples training digits)."""
    train_dir, _ = digits.materialize_digits("train", IMAGE_SIZE)
    reference = os.path.join(out, f"reference_heldout_{IMAGE_SIZE}px.npz")
    if not os.path.exists(reference):
        digits.write_reference_npz(reference, IMAGE_SIZE, split="heldout")
    floor_npz = os.path.join(out, "floor", f"train_{num_samples}x{IMAGE_SIZE}x{IMAGE_SIZE}x3.npz")
    if not os.path.exists(floor_npz):
        os.makedirs(os.path.dirname(floor_npz), exist_ok=True)
        images, labels, _ = digits.digits_images("train", IMAGE_SIZE)
        pick = np.random.RandomState(SEED).permutation(len(labels))[:num_samples]
        atomic_savez(floor_npz, arr_0=images[pick], arr_1=labels[pick])
    print(f"[1/6] digits: training folder {train_dir}; held-out reference {reference}; floor batch {floor_npz}")
    return train_dir, reference, floor_npz


def train_models(out, recipe, train_dir, times, launcher):
    """:return: {"diffusion", "guide"} checkpoint paths."""
    ranks = RANKS if launcher else 1  # the scripts' --batch_size is per rank
    # random_flip auto means True for a --data_dir, and mirrored digits are not digits
    common = dict(data_dir=train_dir, random_flip=False, seed=SEED, log_interval=100, **precision_flags(recipe))
    steps = recipe.train_steps
    diffusion = train(
        f"[2/6] base model: {steps} steps, batch {recipe.train_batch}", os.path.join(out, "diffusion"),
        "image_train.py",
        dict(model_flags(recipe), **common, batch_size=max(recipe.train_batch // ranks, 1), lr=recipe.lr,
             ema_rate=recipe.ema_rate, lr_anneal_steps=steps, save_interval=steps),
        f"ema_{recipe.ema_rate}_{steps:06d}.pt", times, launcher)
    classifier = dict(classifier_flags(recipe), **common, batch_size=max(recipe.guide_batch // ranks, 1),
                      lr=recipe.guide_lr, anneal_lr=True, eval_interval=100)
    guide = train(
        f"[3/6] guide: noisy classifier, {recipe.guide_steps} steps", os.path.join(out, "guide"),
        "classifier_train.py",
        dict(classifier, noised=True, iterations=recipe.guide_steps, save_interval=recipe.guide_steps,
             diffusion_steps=model_flags(recipe)["diffusion_steps"], noise_schedule=recipe.noise_schedule),
        f"model{recipe.guide_steps:06d}.pt", times, launcher)
    return dict(diffusion=diffusion, guide=guide)


def sample_row(row, out, recipe, models, times, launcher):
    """Sample one row (or reuse its npz). :return: the npz path."""
    run_dir = os.path.join(out, "samples", row.name)
    os.makedirs(run_dir, exist_ok=True)
    n = recipe.num_samples
    npz = os.path.join(run_dir, f"samples_{n}x{IMAGE_SIZE}x{IMAGE_SIZE}x3.npz")
    if os.path.exists(npz):
        print(f"[4/6] sampling {row.name}: reusing {npz}")
        return npz
    script, flags = sampling_flags(row, recipe)
    flags = dict(model_flags(recipe), **flags, model_path=models["diffusion"], output_dir=run_dir,
                 **precision_flags(recipe))
    if script == "classifier_sample.py":
        flags.update(classifier_flags(recipe), classifier_path=models["guide"])
    _, seconds = run_stage(f"[4/6] sampling {row.name}: {row.guidance}, {row.sampler}", script, flags,
                           os.path.join(run_dir, "sample.log"), launcher=launcher)
    times.record(f"sample_{row.name}", seconds)
    return npz


def judge_batch(npz, judge):
    """The independent pixel judge on a labelled batch: dict(judge, judge_se, on_manifold, histogram)."""
    images, labels = read_labelled_batch(npz)
    result = judge.score(images, labels)
    print(f"  independent judge on {os.path.basename(os.path.dirname(npz))}: accuracy {result.accuracy:.3f} "
          f"(same as: python scripts/classifier_accuracy.py --samples {npz} --judge pixel_knn "
          f"--judge_data digits --image_size {IMAGE_SIZE} --num_classes {NUM_CLASSES})", flush=True)
    return dict(judge=result.accuracy, judge_se=result.accuracy_stderr, on_manifold=result.on_manifold,
                histogram=label_histogram(result.predicted, NUM_CLASSES).tolist())


def cached_scores(npz):
    """The scores.json beside `npz` when it is newer than the batch, else None."""
    cached = os.path.join(os.path.dirname(npz), "scores.json")
    if os.path.exists(cached) and os.path.getmtime(cached) > os.path.getmtime(npz):
        print(f"[5/6] scores {os.path.basename(os.path.dirname(npz))}: reusing {cached}")
        with open(cached) as f:
            return json.load(f)
    return None


def score_all(batches, out, reference, judge, times):
    """
    Evaluator metrics and the independent judge of every batch, cached in scores.json beside
    each; the batches not scored yet go through one evaluator run.

    :param batches: [(npz, the batch to judge: the npz itself, or for the floor the held-out digits)].
    :return: one scores dict per batch.
    """
    scores = [cached_scores(npz) for npz, _ in batches]
    todo = [i for i, s in enumerate(scores) if s is None]
    if not todo:
        return scores
    start = time.time()
    ref_stats = os.path.join(out, f"reference_stats_{IMAGE_SIZE}px.npz")
    flags = {"fid_method": "fast"}
    if not os.path.exists(ref_stats):
        flags["save_ref_stats"] = ref_stats
    metrics = evaluate(ref_stats if os.path.exists(ref_stats) else reference, [batches[i][0] for i in todo], flags,
                       os.path.join(out, "evaluator.log"))
    for i, found in zip(todo, metrics):
        npz, judged = batches[i]
        scores[i] = dict(found, **judge_batch(judged, judge))
        atomic_write(os.path.join(os.path.dirname(npz), "scores.json"),
                     lambda f, found=scores[i]: json.dump(found, f, indent=2), binary=False)
    times.record("scoring", times.seconds.get("scoring", 0.0) + time.time() - start)
    return scores


def run_demo(out, recipe, rows):
    """
    Every stage, reusing what exists under `out`. :return: the results dict (also written as
    results.json beside results.md).
    """
    os.makedirs(out, exist_ok=True)
    times = StageTimes(os.path.join(out, "stage_seconds.json"))
    start = time.time()
    train_dir, reference, floor_npz = prepare_data(out, recipe.num_samples)
    launcher = mpi_launcher(RANKS)
    models = train_models(out, recipe, train_dir, times, launcher)
    judge = digits_judge(IMAGE_SIZE)
    num_reference = 30 * NUM_CLASSES
    npzs = [sample_row(row, out, recipe, models, times, launcher) for row in rows]
    # the floor row's judge column: the independent judge on the held-out real digits (on the
    # training digits it would be 1.0 by construction: each is its own nearest neighbour)
    scores = score_all([(npz, npz) for npz in npzs] + [(floor_npz, reference)], out, reference, judge, times)
    results = []
    for row, npz, found in zip(rows, npzs, scores):
        sample_seconds = times.seconds.get(f"sample_{row.name}", float("nan"))
        results.append(dict(run=row.name, guidance=row.guidance, sampler=row.sampler,
                            steps=row_steps(row, recipe), nfe=model_evaluations(row, recipe),
                            seconds_per_sample=sample_seconds / recipe.num_samples,
                            grid=npz[:-len(".npz")] + ".png",
                            **report.add_stderrs(found, recipe.num_samples, num_reference)))
    floor = report.add_stderrs(scores[-1], recipe.num_samples, num_reference)
    return dict(recipe=recipe.__dict__, cpu=describe_cpu(), rows=results, floor=floor,
                stage_seconds=times.seconds, demo_seconds_this_run=time.time() - start,
                demo_seconds_all_stages=times.total(), num_reference=num_reference)
