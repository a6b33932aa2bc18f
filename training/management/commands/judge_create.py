"""manage.py judge_create --name N --kind reward_model|chat|simulated ...: a judge (a voter that
is a program) and its account `judge-<name>`, which votes through the queue and never signs in.

    --kind reward_model --reward-model <run id> [--tie-margin 0.1]
    --kind chat --endpoint URL --model M [--seed 0]   (key from JUDGE_API_KEY)
    --kind simulated --base <judge name> --agreement 0.75 --left-bias 0.55 [--spammer]
                     [--seconds-median 12] [--seconds-sigma 0.5] [--seed 0]
"""

from django.core.management.base import BaseCommand

from annotation.management.shared import service_errors
from training.models import Judge
from training.services.judges import judge_create

# judge_create's own fields, passed as given (the options carry their names).
FIELDS = ("name", "kind", "reward_model", "endpoint_url", "endpoint_model", "base")
PARAMS = {  # option -> type; only the ones given are passed (the rest keep their defaults)
    "agreement": float,
    "left_bias": float,
    "seconds_median": float,
    "seconds_sigma": float,
    "seed": int,
    "tie_margin": float,
    "max_tokens": int,
}


class Command(BaseCommand):
    help = "Create a judge: a reward model, an OpenAI-compatible chat endpoint, or simulated raters."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", required=True, choices=Judge.Kind.values)
        parser.add_argument("--reward-model", type=int, dest="reward_model", help="Reward-model run id.")
        parser.add_argument(
            "--endpoint", default="", dest="endpoint_url", help="Base URL of the chat endpoint (…/v1)."
        )
        parser.add_argument(
            "--model", default="", dest="endpoint_model", help="Model name sent to the chat endpoint."
        )
        parser.add_argument("--base", help="Name of the judge simulated raters copy.")
        parser.add_argument("--spammer", action="store_true", default=None, help="Answer at random.")
        for name, kind in PARAMS.items():
            parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, dest=name)

    def handle(self, *args, **options):
        fields = {k: options[k] for k in FIELDS}
        params = {k: options[k] for k in (*PARAMS, "spammer") if options.get(k) is not None}
        with service_errors():
            judge = judge_create(**fields, params=params)
        self.stdout.write(
            self.style.SUCCESS(
                f"Judge {judge.name} ({judge.get_kind_display()}), account {judge.user.username}."
            )
        )
        if judge.params:
            self.stdout.write("Parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(judge.params.items())))
