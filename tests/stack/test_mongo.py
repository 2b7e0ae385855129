"""Smoke test of the local MongoDB-wire server: bulk upserts, finds and $lookup."""

import uuid

import pymongo
from pymongo import ReplaceOne


def test_upsert_find_and_lookup(stack_up):
    uri = stack_up("mongo")["mongo"]["uri"]
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    db = client[f"smoke_{uuid.uuid4().hex[:8]}"]
    try:
        users = [{"_id": f"u{i}", "name": f"user {i}"} for i in range(3)]
        txns = [{"_id": "t1", "sender_id": "u0", "receiver_id": "u2"}]
        for _ in range(2):  # a replay upserts the same documents again
            db.users.bulk_write([ReplaceOne({"_id": u["_id"]}, u, upsert=True) for u in users])
            db.transactions.bulk_write([ReplaceOne({"_id": t["_id"]}, t, upsert=True) for t in txns])
        assert db.users.count_documents({}) == 3
        assert db.users.find_one({"_id": "u1"})["name"] == "user 1"
        joined = list(
            db.transactions.aggregate(
                [
                    {"$lookup": {"from": "users", "localField": "sender_id",
                                 "foreignField": "_id", "as": "sender"}},
                    {"$lookup": {"from": "users", "localField": "receiver_id",
                                 "foreignField": "_id", "as": "receiver"}},
                    {"$unwind": "$sender"},
                    {"$unwind": "$receiver"},
                    {"$project": {"sender": "$sender.name", "receiver": "$receiver.name"}},
                ]
            )
        )
        assert joined == [{"_id": "t1", "sender": "user 0", "receiver": "user 2"}]
    finally:
        client.drop_database(db.name)
        client.close()
