import asyncio

from services.branding.app import create

if __name__ == "__main__":
    asyncio.run(create().run())
