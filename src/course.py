"""
Course profiles (SPEC §11): CS224N (the default, SPEC §3 and §7) and XCS224N teach the same
assignment with recipes that differ in exactly the four fields of Course. The dataset,
CorruptionBatches, the trainer's schedule, run.py and the `submission` package take them from here.

    course = get_course("xcs224n")
    ds = CharCorruptionDataset(text, 128, course=course)
    config = course.pretrain_config(len(ds), 128)   # the TrainerConfig of the recipe
"""
from dataclasses import dataclass

from trainer import TrainerConfig

WARMUP_TOKENS = 512 * 20  # both phases, both courses


@dataclass(frozen=True)
class Course:
    name: str
    truncation_fraction: float  # documents are truncated to U{4..int(block_size * this)}
    mask_after_content: bool  # a third MASK ends the masked content: prefix ⁇ suffix ⁇ masked ⁇ □□□
    pretrain_final_epochs: "int | None"  # pretraining final_tokens = this * len(dataset) * block_size; None: max_epochs
    clamp_progress: bool  # the cosine stays at its floor past final_tokens; unclamped, the lr rises again
    # the cohort's handout: the variants its run.sh trains, and its helper's DataLoader workers when finetuning
    variants: tuple = ("vanilla", "rope", "perceiver", "synthesizer")
    finetune_num_workers: int = 4

    @property
    def n_masks(self):
        """MASK characters in a span-corruption example."""
        return 3 if self.mask_after_content else 2

    def pretrain_config(self, n_documents, block_size, max_epochs=650, batch_size=128, learning_rate=6e-3,
                        **kwargs):
        """TrainerConfig of the recipe's pretraining; kwargs: further TrainerConfig fields (writer, desc...)."""
        # CS224N: a shorter run (--pretrain_epochs) still decays to its end
        final_epochs = self.pretrain_final_epochs or max_epochs
        return TrainerConfig(max_epochs=max_epochs, batch_size=batch_size, learning_rate=learning_rate,
                             lr_decay=True, warmup_tokens=WARMUP_TOKENS,
                             final_tokens=final_epochs * n_documents * block_size,
                             clamp_progress=self.clamp_progress, **kwargs)

    def finetune_config(self, n_documents, block_size, pretrained, max_epochs=None, batch_size=256,
                        learning_rate=6e-4, **kwargs):
        """TrainerConfig of the recipe's finetuning: 75 epochs from scratch, 10 from pretrained params.
        n_documents: len() of the pretraining dataset, as the course's final_tokens counts it."""
        return TrainerConfig(max_epochs=max_epochs or (10 if pretrained else 75), batch_size=batch_size,
                             learning_rate=learning_rate, lr_decay=True, warmup_tokens=WARMUP_TOKENS,
                             final_tokens=200 * n_documents * block_size, clamp_progress=self.clamp_progress,
                             **kwargs)


CS224N = Course("cs224n", truncation_fraction=7 / 8, mask_after_content=False, pretrain_final_epochs=None,
                clamp_progress=True)
# XCS224N's two cohorts share the recipe: the synthesizer year, and Fall 2025, which runs RoPE instead
XCS224N = Course("xcs224n", truncation_fraction=3 / 4, mask_after_content=True, pretrain_final_epochs=200,
                 clamp_progress=False, variants=("vanilla", "synthesizer"))
XCS224N_2025 = Course("xcs224n-2025", truncation_fraction=3 / 4, mask_after_content=True,
                      pretrain_final_epochs=200, clamp_progress=False, variants=("vanilla", "rope"),
                      finetune_num_workers=0)
COURSES = {course.name: course for course in (CS224N, XCS224N, XCS224N_2025)}


def get_course(course):
    """The Course for a name ('cs224n', 'xcs224n') or a Course."""
    if isinstance(course, Course):
        return course
    if course not in COURSES:
        raise ValueError(f"unknown course {course!r}; choose one of {', '.join(COURSES)}")
    return COURSES[course]
