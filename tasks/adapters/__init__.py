"""Dataset adapters; importing this package registers them all."""

from tasks.adapters import folders, generated, medmnist, cataract101, medical_source, kvasir, hyperkvasir, chestxray, imageclef, lapgyn4, csv_table  # noqa: F401
