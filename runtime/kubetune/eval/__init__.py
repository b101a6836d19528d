"""Evaluation: multiple-choice benchmarks (`kubetune eval`) and generation metrics (BLEU-4, ROUGE).

``config`` and ``benchmark`` are torch-free (the operator and `kubetune validate` read them); ``choice`` scores
a model; ``metrics`` needs the ``eval`` metric libraries (nltk, jieba, rouge-chinese).
"""
