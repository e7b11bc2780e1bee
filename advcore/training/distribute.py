"""Where training runs: one device, all local GPUs, or several machines (`TF_CONFIG`).

Call `split_cpu` and `set_mixed_precision` before anything builds a model: TensorFlow fixes its
devices, and Keras its dtype policy, at first use.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf


def split_cpu(count: int) -> None:
    """Splits the CPU into `count` logical devices (to exercise multi-device code without GPUs)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def set_mixed_precision(enabled: bool) -> None:
    """float16 compute with float32 weights on GPUs; models keep their logits in float32."""
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")


def per_replica(loss):
    """Each replica's share of a loss: gradients are summed across replicas."""
    return loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)


def _tf_config() -> dict:
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ValueError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def cluster_workers() -> int:
    """The workers TF_CONFIG describes (0 outside any cluster)."""
    return len(_tf_config().get("cluster", {}).get("worker", []))


def chief_by_tf_config() -> bool:
    """Whether this process writes the run, known before any strategy exists: the chief task, or
    worker 0 of a cluster without one; a process outside any cluster always writes."""
    config = _tf_config()
    task = config.get("task", {})
    if not config.get("cluster") or not task:
        return True
    if "chief" in config["cluster"]:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """auto: several workers in TF_CONFIG -> multi_worker; several GPUs (or logical CPUs) -> mirrored;
    else the default single-device strategy.

    A multi-worker strategy must exist before TensorFlow runs anything (even listing devices), so
    TF_CONFIG is looked at first.
    """
    if kind not in ("auto", "default", "mirrored", "multi_worker"):
        raise ValueError(f"unknown strategy {kind!r}: choose auto, default, mirrored or multi_worker")
    workers = cluster_workers()
    if kind == "multi_worker" or (kind == "auto" and workers > 1):
        if workers < 1:
            raise ValueError("the multi_worker strategy needs TF_CONFIG describing the cluster "
                             '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                             '"task": {"type": "worker", "index": 0}})')
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    if kind == "mirrored" or (kind == "auto" and len(devices) > 1):
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def describe(strategy: tf.distribute.Strategy) -> str:
    """The devices a run uses, for its status and the app."""
    replicas = strategy.num_replicas_in_sync
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = {tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus}
        kind = f"GPU ({', '.join(sorted(names))})"
    else:
        kind = "CPU"
    workers = max(cluster_workers(), 1)
    where = f"{replicas} replicas" + (f" on {workers} workers" if workers > 1 else "")
    return f"{kind}, {where}, {type(strategy).__name__}" if replicas > 1 else f"{kind}, 1 device"
