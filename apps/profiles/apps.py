from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "apps.profiles"
    label = "profiles"
    verbose_name = "End users: pseudonyms, encrypted attributes, events, real-time state"

    def ready(self) -> None:
        # The keyring registers the hook that creates each new tenant's keys on import.
        from apps.profiles import hooks, redaction
        from apps.profiles.keystore import EndUserKeyStore
        from apps.tenancy import keyring

        keyring.register_wrapped_key_store(EndUserKeyStore())
        hooks.register()
        redaction.install()
