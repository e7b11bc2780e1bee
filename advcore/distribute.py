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


def _workers_in_tf_config() -> int:
    try:
        return len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", []))
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """auto: several workers in TF_CONFIG -> multi_worker; several GPUs (or logical CPUs) -> mirrored;
    else the default single-device strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if kind == "auto":
        if _workers_in_tf_config() > 1:
            kind = "multi_worker"
        elif len(gpus) > 1 or (not gpus and len(cpus) > 1):
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in cpus]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multi_worker":
        if _workers_in_tf_config() < 1:
            raise ValueError("the multi_worker strategy needs TF_CONFIG describing the cluster "
                             '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                             '"task": {"type": "worker", "index": 0}})')
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {kind!r}: choose auto, default, mirrored or multi_worker")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes the run; other workers of a cluster train alongside."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def describe(strategy: tf.distribute.Strategy) -> str:
    """The devices a run uses, for its status and the app."""
    replicas = strategy.num_replicas_in_sync
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = {tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus}
        kind = f"GPU ({', '.join(sorted(names))})"
    else:
        kind = "CPU"
    workers = max(_workers_in_tf_config(), 1)
    where = f"{replicas} replicas" + (f" on {workers} workers" if workers > 1 else "")
    return f"{kind}, {where}, {type(strategy).__name__}" if replicas > 1 else f"{kind}, 1 device"
