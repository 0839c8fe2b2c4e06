from shared.settings import CommonSettings


class BrandingSettings(CommonSettings):
    """Settings of the branding worker."""
