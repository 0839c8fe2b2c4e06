from shared.settings import CommonSettings


class MeteringSettings(CommonSettings):
    """Settings of the metering worker."""
