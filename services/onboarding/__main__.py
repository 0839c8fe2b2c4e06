import asyncio

from services.onboarding.app import create

if __name__ == "__main__":
    asyncio.run(create().run())
