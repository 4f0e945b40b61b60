"""Errors of the data layer. Every message names what is wrong, where, and how to fix it."""


class DataError(ValueError):
    """Data on disk (or a dataset option) that cannot be turned into a correct task."""


class UnknownDatasetError(DataError):
    """A dataset name that is not in the registry."""


class ImageReadError(DataError):
    """An image file that cannot be decoded into a correct RGB array."""

    def __init__(self, path, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")
