"""Regenerate ``breast_cancer.csv`` from scikit-learn's bundled copy (no download).

Usage: ``python model-build/data/make_dataset.py [--output PATH]``

Columns: the 30 features in snake_case, then ``malignant`` (1 = malignant, 0 = benign;
scikit-learn's own ``target`` is the reverse). 569 rows. The output is byte-stable for a given
scikit-learn data file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "breast_cancer.csv"
LABEL = "malignant"


def make_dataset(output: Path = DEFAULT_OUTPUT) -> Path:
    """Write the data set as CSV to ``output`` and return the path."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda name: name.replace(" ", "_"))
    frame[LABEL] = 1 - frame.pop("target").astype(int)
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False, lineterminator="\n")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    print(make_dataset(parser.parse_args().output))


if __name__ == "__main__":
    main()
