import asyncio

from services.metering.app import create

if __name__ == "__main__":
    asyncio.run(create().run())
