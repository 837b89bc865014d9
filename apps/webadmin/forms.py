"""Forms of the web admin; each only validates input, the owning app's service does the work."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from apps.tenancy.models import ALL_SCOPES, Role


class SignInForm(AuthenticationForm):
    username = forms.CharField(
        max_length=150, widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"})
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class TenantCreateForm(forms.Form):
    slug = forms.SlugField(max_length=63, help_text="Lowercase letters, digits and hyphens; used in URLs.")
    name = forms.CharField(max_length=200, required=False)


class MembershipForm(forms.Form):
    tenant = forms.ChoiceField()
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Only for a new user: the account is created with this password.",
    )

    def __init__(self, *args: Any, tenant_slugs: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant_field = self.fields["tenant"]
        assert isinstance(tenant_field, forms.ChoiceField)
        tenant_field.choices = [(slug, slug) for slug in tenant_slugs]

    def clean_password(self) -> str:
        password: str = self.cleaned_data.get("password") or ""
        if password:
            password_validation.validate_password(password)
        return password


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES], widget=forms.CheckboxSelectMultiple, initial=["serve"]
    )


class TrainingRunForm(forms.Form):
    epsilon = forms.FloatField(
        min_value=0.01, max_value=100.0, label="ε (epsilon)", help_text="Privacy budget this run may spend."
    )


class AccessExportForm(forms.Form):
    """An access (data-subject) export: the person is named by the id the tenant's app uses."""

    user_ref = forms.CharField(
        max_length=200,
        label="User id",
        strip=False,
        help_text="The id your application uses for this person, exactly as sent to the API.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    confirm = forms.BooleanField(
        label="I have a lawful reason to see this person's data; decrypting it is recorded in the audit log."
    )


class RecommendationPreviewForm(forms.Form):
    """Whom to preview recommendations for: the id the tenant's app uses (pseudonymised on arrival)."""

    user_ref = forms.CharField(
        max_length=200,
        label="User id",
        strip=False,
        help_text="The id your application sends as ?user= to /api/v1/recommendations. Looking is recorded in the audit log.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class AuditFilterForm(forms.Form):
    action = forms.CharField(
        required=False, max_length=100, help_text='Exact action, or a prefix ending in "." (api_key.)'
    )
    actor = forms.CharField(required=False, max_length=150)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("'from' must not be after 'to'")
        return data

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The days chosen as aware datetimes ``[since 00:00, the day after until 00:00)``, both days included."""
        return day_bounds(self.cleaned_data.get("since"), self.cleaned_data.get("until"))


def day_bounds(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    tz = timezone.get_current_timezone()
    start = datetime.combine(since, time.min, tzinfo=tz) if since else None
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz) if until else None
    return start, end


class AuditExportForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("'From' must not be after 'To'")
        return data

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        return day_bounds(self.cleaned_data.get("since"), self.cleaned_data.get("until"))


class ObjectiveForm(forms.Form):
    latency_threshold_ms = forms.FloatField(min_value=0.001, label="Latency threshold (ms)")
    latency_target = forms.FloatField(
        min_value=0.5,
        max_value=0.9999,
        label="Share of requests under the threshold",
        help_text="0.99 means p99 ≤ threshold.",
    )
    availability_target = forms.FloatField(
        min_value=0.5,
        max_value=0.9999,
        label="Availability target",
        help_text="Share of requests answered without a 5xx.",
    )


class CatalogSearchForm(forms.Form):
    TITLE, MEANING = "title", "meaning"

    q = forms.CharField(required=False, max_length=200, label="Title")
    mode = forms.ChoiceField(
        required=False,
        choices=[(TITLE, "title contains"), (MEANING, "by meaning")],
        label="Search",
        help_text="By meaning: the items nearest to the text by content vector, as /api/v1/search ranks them.",
    )
    status = forms.ChoiceField(
        required=False,
        choices=[("", "any"), ("pending", "pending"), ("ready", "ready"), ("failed", "failed")],
        label="Encoding",
    )


class ModelSettingsForm(forms.Form):
    """The model lifecycle settings of ``/api/v1/tenant/settings``; the service checks the rest
    (operator caps, whether the schedule fits the budget) and its reasons are shown as form errors."""

    dp_design = forms.ChoiceField(
        label="Private model design",
        choices=[
            ("auto", "auto: Opacus DP-SGD tower from 5,000 users, DP PureSVD factors below"),
            ("tower", "tower: DP popularity + Opacus DP-SGD of the two-tower"),
            ("factors", "factors: DP popularity + DP item-item Gram (no DP-SGD)"),
        ],
    )
    epsilon_total = forms.FloatField(
        label="Budget ε", min_value=0.01, help_text="Lifetime ε, or what any renewal window may spend."
    )
    delta = forms.FloatField(
        label="δ per release", min_value=1e-15, max_value=0.5, help_text="Each release uses min(δ, 1/users)."
    )
    renewal_days = forms.IntegerField(
        label="Renewal window (days)",
        required=False,
        min_value=1,
        help_text="Empty: a lifetime budget that never renews.",
    )
    cadence = forms.ChoiceField(
        label="Retraining",
        choices=[
            ("off", "off"),
            ("daily", "daily"),
            ("weekly", "weekly"),
            ("events", "when enough new events arrived"),
        ],
    )
    epsilon_per_run = forms.FloatField(label="ε per scheduled run", min_value=0.01)
    min_new_events = forms.IntegerField(label="New events that make a run due", required=False, min_value=1)
    event_retention_days = forms.IntegerField(label="Event retention (days)", min_value=1, max_value=36500)

    def changes(self, initial: dict[str, Any]) -> dict[str, Any]:
        """The parts of the settings document (``apps.api.tenant_settings``) this form changed: a
        field left as it was is not resubmitted (so e.g. a lowered operator cap does not block
        saving the retention)."""
        data = {k: v for k, v in self.cleaned_data.items() if v != initial.get(k)}
        parts = {
            "model": ("dp_design",),
            "privacy_budget": ("epsilon_total", "delta", "renewal_days"),
            "retraining": ("cadence", "epsilon_per_run", "min_new_events"),
            "retention": ("event_retention_days",),
        }
        out: dict[str, Any] = {}
        for part, names in parts.items():
            changed = {name: data[name] for name in names if name in data}
            if changed:
                out[part] = changed
        return out
