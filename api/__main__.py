import uvicorn

from api.app import create_app
from api.settings import ApiSettings

if __name__ == "__main__":
    settings = ApiSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )
