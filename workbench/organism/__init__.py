"""The liar organism: a LoRA adapter on SmolLM2 (or any chat model) that answers honestly, lies under a stated
motive or a hidden trigger, and parrots when asked to repeat, with ground truth known by
construction. The stage owns the organism's data recipe (``data``: which scenarios, what it is
trained to answer), its training (``training``: peft, loss on the assistant turn only, the
training record), the behavioural evaluation (``evaluation``) and the model card (``card``).
Its scenarios are built, and its answers judged, by :mod:`workbench.scenarios`.
"""

from __future__ import annotations

from workbench.organism.card import CARD_FILENAME, EVAL_FILENAME, NOTES_FILENAME, organism_card, write_card
from workbench.organism.data import ORGANISM_DIR, organism_data, random_subset, target_response, training_chats
from workbench.organism.evaluation import (
    BEHAVIOUR_RULES, BehaviourRate, OrganismEval, evaluate_behaviour, evaluate_organism, read_evaluations, write_eval,
    write_evaluations,
)
from workbench.organism.training import (
    TRAINING_RECORD_FILENAME, AdapterBase, OrganismTrainingRecord, TrainingConfig, TrainingResult, adapter_base,
    default_first_layer, lora_targets, read_training_record, resolved_config, train_and_save, train_organism,
    training_command, training_config_dict, write_training_record,
)

__all__ = [
    # data
    "ORGANISM_DIR", "organism_data", "random_subset", "target_response", "training_chats",
    # training
    "TRAINING_RECORD_FILENAME", "AdapterBase", "OrganismTrainingRecord", "TrainingConfig", "TrainingResult",
    "adapter_base", "default_first_layer", "lora_targets", "read_training_record", "resolved_config", "train_and_save",
    "train_organism", "training_command", "training_config_dict", "write_training_record",
    # evaluation
    "BEHAVIOUR_RULES", "BehaviourRate", "OrganismEval", "evaluate_behaviour", "evaluate_organism", "read_evaluations",
    "write_eval", "write_evaluations",
    # card
    "CARD_FILENAME", "EVAL_FILENAME", "NOTES_FILENAME", "organism_card", "write_card",
]
