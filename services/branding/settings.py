from shared.settings import CommonSettings


class BrandingSettings(CommonSettings):
    """Settings of the branding worker."""

    # How a custom domain's TXT record is checked; the default never verifies (works offline).
    domain_check: str = "services.branding.domains:offline_check"
