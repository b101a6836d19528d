"""The multiple-choice prompt, as LLaMA-Factory's evaluation writes it. Pure functions.

Each solved example is one user turn (question, lettered options, "Answer:") and one assistant turn (the letter);
the question to score is the last user turn. The instruction line naming the subject opens the first user turn.
The conversation is then rendered by the model's chat template, so a chat model sees its own format.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kubetune.eval.benchmark import Question, Subject


@dataclass(frozen=True)
class EvalTemplate:
    system: str
    choice: str
    answer: str


TEMPLATES: dict[str, EvalTemplate] = {
    "en": EvalTemplate(system="The following are multiple choice questions (with answers) about {subject}.\n\n",
                       choice="\n{letter}. {content}", answer="\nAnswer:"),
    "zh": EvalTemplate(system="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
                       choice="\n{letter}. {content}", answer="\n答案："),
}


def format_question(question: Question, template: EvalTemplate) -> str:
    """``question\\nA. ..\\nB. ..\\nAnswer:``"""
    options = "".join(template.choice.format(letter=letter, content=text)
                      for letter, text in zip(question.letters, question.options, strict=True))
    return question.question + options + template.answer


def build_messages(question: Question, shots: list[Question], subject_name: str,
                   template: EvalTemplate) -> list[dict[str, str]]:
    """User/assistant turns for ``shots`` (solved) and a last user turn for ``question``."""
    messages: list[dict[str, str]] = []
    for shot in shots:
        messages.append({"role": "user", "content": format_question(shot, template)})
        messages.append({"role": "assistant", "content": shot.answer})
    messages.append({"role": "user", "content": format_question(question, template)})
    messages[0] = {"role": "user", "content": template.system.format(subject=subject_name) + messages[0]["content"]}
    return messages


def pick_shots(subject: Subject, n_shot: int, seed: int) -> list[list[Question]]:
    """The solved examples for each question of ``subject``: ``n_shot`` dev rows drawn per question.

    The draw is seeded by ``seed`` and the subject, so a run is repeatable and does not depend on which other
    subjects were scored. When dev has at most ``n_shot`` rows, every question gets all of them in file order.
    """
    examples = list(subject.examples)
    if len(examples) <= n_shot:
        return [examples for _ in subject.questions]
    rng = random.Random(f"{seed}:{subject.key}")
    return [rng.sample(examples, n_shot) for _ in subject.questions]
