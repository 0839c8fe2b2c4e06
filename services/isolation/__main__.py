import asyncio

from services.isolation.app import create

if __name__ == "__main__":
    asyncio.run(create().run())
