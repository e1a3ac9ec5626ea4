#include "common/http/message.h"

#include <gtest/gtest.h>

#include "common/http/router.h"

namespace zt::http {
namespace {

TEST(HttpMessage, ParsesPathAndDecodesQuery) {
  Request req;
  req.target = "/a%20b/c?level=debug&x=1%2B1&y=a+b&flag&=empty&&z=";
  ASSERT_TRUE(parse_target(req));
  EXPECT_EQ(req.path, "/a b/c");
  std::vector<Field> expected{{"level", "debug"}, {"x", "1+1"},  {"y", "a b"},
                              {"flag", ""},       {"", "empty"}, {"z", ""}};
  EXPECT_EQ(req.query, expected);
  EXPECT_EQ(req.query_param("level"), "debug");
  EXPECT_EQ(req.query_param("missing"), std::nullopt);
}

TEST(HttpMessage, PlusInPathIsNotASpace) {
  Request req;
  req.target = "/a+b";
  ASSERT_TRUE(parse_target(req));
  EXPECT_EQ(req.path, "/a+b");
}

TEST(HttpMessage, AcceptsAbsoluteFormTargets) {
  Request req;
  req.target = "http://localhost:15000/logging?level=info";
  ASSERT_TRUE(parse_target(req));
  EXPECT_EQ(req.path, "/logging");
  EXPECT_EQ(req.query_param("level"), "info");
  req.target = "http://localhost:15000";
  ASSERT_TRUE(parse_target(req));
  EXPECT_EQ(req.path, "/");
}

TEST(HttpMessage, RejectsMalformedEscapesAndNonPathTargets) {
  for (const char* target : {"/bad%2", "/bad%zz", "/ok?x=%4", "*", "relative", ""}) {
    Request req;
    req.target = target;
    EXPECT_FALSE(parse_target(req)) << target;
  }
}

TEST(HttpMessage, HeaderLookupIsCaseInsensitive) {
  Request req;
  req.headers = {{"Content-Type", "text/plain"}, {"X-Thing", "1"}};
  EXPECT_EQ(req.header("content-type"), "text/plain");
  EXPECT_EQ(req.header("X-THING"), "1");
  EXPECT_EQ(req.header("nope"), std::nullopt);
}

TEST(HttpRouter, RoutesByPathThen404Then405WithAllow) {
  Router router;
  router.get("/a", [](const Request&) { return Response::text(200, "get a"); });
  router.post("/a", [](const Request&) { return Response::text(201, "post a"); });
  router.post("/b", [](const Request&) { return Response::text(200, "post b"); });
  router.add("", "/any", [](const Request&) { return Response::text(200, "any"); });
  auto call = [&](std::string method, std::string path) {
    Request req;
    req.method = std::move(method);
    req.path = std::move(path);
    return router(req);
  };
  EXPECT_EQ(call("GET", "/a").body, "get a");
  EXPECT_EQ(call("POST", "/a").status, 201);
  EXPECT_EQ(call("GET", "/nothing").status, 404);
  auto wrong = call("GET", "/b");
  EXPECT_EQ(wrong.status, 405);
  ASSERT_EQ(wrong.headers.size(), 1u);
  EXPECT_EQ(wrong.headers[0], (Field{"Allow", "POST"}));
  EXPECT_EQ(call("DELETE", "/a").headers[0], (Field{"Allow", "GET, POST"}));
  EXPECT_EQ(call("PATCH", "/any").body, "any");
  EXPECT_EQ(router.routes().size(), 4u);
}

}  // namespace
}  // namespace zt::http
