"""Token statistics: a logistic regression over hashed word and character n-grams.

The transformer reads the first few hundred word pieces well; token statistics read the whole
(cleaned) text and a few headers cheaply and rank the hardest ham better (see
docs/benchmarks.md). A model version ships both and combines them (``daemon/spam/model.py``).

Stored as plain arrays (``tokens.npz``) plus JSON, not as a pickle: loading a model version
must never execute code from the model directory. The vectorizers are hashing ones, so they
have no vocabulary to store and are rebuilt from their settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from daemon.spam.text import TextSettings

# The token part reads much more than the transformer, plus every header, like bogofilter and
# SpamAssassin's Bayes: in 5-fold cross-validation on the training split, all headers beat a
# hand-picked set (mailer, content type, reply path): ROC AUC 0.99964 vs 0.99944, spam recall at
# 0.3 % FPR 0.971 vs 0.953 (docs/benchmarks.md).
TOKEN_TEXT_SETTINGS = TextSettings(head_words=1500, tail_words=300, all_headers=True)


@dataclass(frozen=True)
class TokenSettings:
    word_features: int = 2**20
    char_features: int = 2**20
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    c: float = 100.0
    """Inverse regularisation strength, chosen on a validation split (see docs/benchmarks.md)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenSettings:
        return cls(
            word_features=data["word_features"],
            char_features=data["char_features"],
            word_ngrams=tuple(data["word_ngrams"]),
            char_ngrams=tuple(data["char_ngrams"]),
            c=data["c"],
        )


def _vectorizers(settings: TokenSettings) -> tuple[HashingVectorizer, HashingVectorizer]:
    common: dict[str, Any] = {"alternate_sign": False, "norm": None, "lowercase": True, "dtype": np.float32}
    word = HashingVectorizer(
        analyzer="word", ngram_range=settings.word_ngrams, n_features=settings.word_features,
        token_pattern=r"(?u)\b\w[\w'.$%-]*\w\b|[$!€£%]", **common,
    )
    char = HashingVectorizer(
        analyzer="char_wb", ngram_range=settings.char_ngrams, n_features=settings.char_features, **common
    )
    return word, char


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear tf times idf, rows scaled to unit length (what TfidfTransformer does, without its state)."""
    x = counts.tocsr(copy=True)
    x.data = (1.0 + np.log(x.data)).astype(np.float32)
    x = x @ sp.diags(idf.astype(np.float32))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ x)


def _idf(counts: sp.csr_matrix) -> NDArray[np.float32]:
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    n = counts.shape[0]
    return np.asarray(np.log((1 + n) / (1 + df)) + 1.0, dtype=np.float32)


class TokenModel:
    """Fit on texts, then give a spam logit per text; saved as arrays, loaded without pickle."""

    def __init__(self, settings: TokenSettings, word_idf: np.ndarray, char_idf: np.ndarray,
                 coef: np.ndarray, intercept: float) -> None:
        self.settings = settings
        self._word, self._char = _vectorizers(settings)
        self._word_idf = word_idf
        self._char_idf = char_idf
        # Rounded to float16 here, not only on save, so the scores seen while choosing thresholds
        # are exactly the scores of the saved model.
        self._coef = coef.astype(np.float16).astype(np.float32)
        self._intercept = float(intercept)

    @classmethod
    def fit(cls, texts: list[str], labels: list[int], settings: TokenSettings | None = None) -> TokenModel:
        settings = settings or TokenSettings()
        word, char = _vectorizers(settings)
        wc = word.transform(texts)
        cc = char.transform(texts)
        word_idf, char_idf = _idf(wc), _idf(cc)
        x = sp.hstack([_tfidf(wc, word_idf), _tfidf(cc, char_idf)]).tocsr()
        clf = LogisticRegression(C=settings.c, class_weight="balanced", max_iter=2000, solver="liblinear")
        clf.fit(x, np.asarray(labels))
        return cls(settings, word_idf, char_idf, clf.coef_.ravel(), float(clf.intercept_[0]))

    def features(self, texts: list[str]) -> sp.csr_matrix:
        wc = self._word.transform(texts)
        cc = self._char.transform(texts)
        return sp.hstack([_tfidf(wc, self._word_idf), _tfidf(cc, self._char_idf)]).tocsr()

    def logits(self, texts: list[str]) -> np.ndarray:
        """Spam log-odds per text (positive = spam)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.features(texts) @ self._coef).ravel() + self._intercept

    def save(self, directory: Path) -> None:
        np.savez_compressed(
            directory / "tokens.npz", word_idf=self._word_idf, char_idf=self._char_idf,
            coef=self._coef.astype(np.float16), intercept=np.array([self._intercept]),
        )
        (directory / "tokens.json").write_text(json.dumps(self.settings.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> TokenModel:
        settings = TokenSettings.from_json(json.loads((directory / "tokens.json").read_text()))
        with np.load(directory / "tokens.npz", allow_pickle=False) as arrays:
            return cls(settings, arrays["word_idf"], arrays["char_idf"], arrays["coef"].astype(np.float32),
                       float(arrays["intercept"][0]))
