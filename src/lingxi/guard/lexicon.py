"""Word lists the rule-based name, place and organisation detectors lean on.

Written for Lingxi (common knowledge, no external list copied): the commonest Chinese surnames,
common English given names, Chinese province-level divisions and large cities, and English
place names. They decide where a name or address may start; they are not meant to be complete.
"""

from __future__ import annotations

#: Single-character Chinese surnames, roughly the 150 commonest, plus compound surnames.
CN_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔"
    "向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌"
    "毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦"
    "麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩"
    "明佘池查麻苑迟邝"
) | frozenset(["欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "令狐", "宇文", "夏侯", "端木"])

#: Words that follow a Chinese name and make it one (张伟先生, 李娜经理).
CN_NAME_TITLES = (
    "先生", "女士", "小姐", "同学", "老师", "经理", "医生", "大夫", "教授", "律师", "主任", "总监", "博士",
    "师傅", "阿姨", "叔叔", "院长", "处长", "科长", "局长", "部长", "董事长", "总经理", "同志", "警官",
)

#: Words right before a Chinese name (姓名：王芳, 我叫李明).
CN_NAME_CUES = (
    "姓名", "名字", "我叫", "名叫", "叫做", "联系人", "收件人", "收货人", "申请人", "患者", "客户", "持卡人",
    "户主", "负责人", "法人", "法定代表人", "签名", "经办人", "员工", "学生", "病人", "乘客",
)

#: Province-level divisions, with and without their suffix.
CN_PROVINCES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建",
    "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海",
    "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门",
)

#: Large prefecture-level cities (without 市), so an address that starts at the city is found.
CN_CITIES = (
    "广州", "深圳", "杭州", "南京", "苏州", "武汉", "成都", "西安", "长沙", "郑州", "青岛", "济南", "沈阳",
    "大连", "哈尔滨", "长春", "石家庄", "太原", "合肥", "福州", "厦门", "南昌", "昆明", "贵阳", "南宁", "海口",
    "兰州", "西宁", "银川", "乌鲁木齐", "拉萨", "呼和浩特", "宁波", "温州", "无锡", "常州", "东莞", "佛山",
    "珠海", "中山", "惠州", "汕头", "泉州", "烟台", "潍坊", "徐州", "南通", "扬州", "绍兴", "嘉兴", "金华",
    "台州", "洛阳", "宜昌", "襄阳", "株洲", "岳阳", "绵阳", "桂林", "三亚", "保定", "唐山", "邯郸", "秦皇岛",
    "大同", "包头", "鞍山", "吉林", "大庆", "芜湖", "赣州", "九江", "淄博", "临沂", "济宁", "开封", "南阳",
)

#: Chinese address components, in the order they appear (province → room).
CN_ADDRESS_SUFFIXES = (
    "省", "自治区", "特别行政区", "市", "自治州", "州", "盟", "地区", "区", "县", "旗", "镇", "乡", "街道",
    "村", "社区", "小区", "大道", "路", "街", "巷", "弄", "胡同", "里", "号院", "号楼", "号", "栋", "幢",
    "座", "单元", "层", "楼", "室", "大厦", "广场", "花园", "公寓", "苑",
)

#: Chinese organisation suffixes, longest first.
CN_ORG_SUFFIXES = (
    "股份有限公司", "有限责任公司", "有限公司", "集团公司", "集团", "公司", "银行", "支行", "分行", "大学",
    "学院", "中学", "小学", "幼儿园", "医院", "卫生院", "研究院", "研究所", "研究中心", "实验室", "委员会",
    "事务所", "律师事务所", "基金会", "协会", "学会", "出版社", "报社", "电视台", "法院", "检察院", "公安局",
    "派出所", "管理局", "税务局", "政府", "工厂", "厂",
)

#: Common English given names (not ambiguous ordinary words: no "May", "Will", "Grace" alone).
EN_GIVEN_NAMES = frozenset(
    """
    James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony
    Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan
    Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander
    Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle
    Ethan Walter Noah Jeremy Christian Keith Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan
    Jesse Jordan Bryan Billy Joe Bruce Gabriel Logan Albert Willie Alan Juan Wayne Elijah Randy Roy Vincent
    Ralph Eugene Russell Bobby Mason Philip Louis Liam Oliver Lucas Owen Caleb Isaac Luke Carlos Luis Miguel
    Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret Sandra
    Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon Laura
    Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine
    Debra Rachel Carolyn Janet Catherine Maria Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly
    Lauren Christina Joan Evelyn Judith Megan Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara
    Madison Frances Kathryn Janice Jean Abigail Alice Judy Sophia Denise Amber Doris Marilyn Danielle Beverly
    Isabella Theresa Diana Natalie Brittany Charlotte Marie Kayla Alexis Lori Ava Mia Chloe Zoe Lily Ella
    Wei Jing Li Ming Hui Yan Xin Lei Jun Hao Yu Fang Ying Tao Chen Yong Qiang Feng Hong Ping Bo Lin Na Min
    Ahmed Mohammed Muhammad Ali Omar Fatima Aisha Priya Raj Rahul Anil Sanjay Deepak Hiroshi Takeshi Yuki
    Kenji Sakura Hans Klaus Pierre Jean-Pierre Francois Giovanni Marco Luca Sofia Elena Ivan Olga Dmitri
    """.split()
)

#: Common surnames in English-speaking countries (a capitalised word before one is a given name).
EN_SURNAMES = frozenset(
    """
    Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson
    Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis
    Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall
    Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes
    Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard
    Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez
    Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman
    Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham
    Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens
    Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry
    Chen Wang Zhang Liu Li Singh Kumar Shah Khan Ali Cohen Muller Schneider Weber Meyer Wagner Becker Schulz
    """.split()
)

#: Words that look like names but start sentences or titles; never a name alone.
EN_NOT_NAMES = frozenset(
    "I The A An This That These Those It He She We They You My Your Our Their His Her Its Dear Hi Hello Thanks "
    "Please Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July "
    "August September October November December Street Avenue Road Inc Corp Ltd LLC Bank University Hospital "
    "Mr Mrs Ms Dr Prof Sir Madam Miss Name Email Phone Address Call Contact Send Meet Ask Tell Visit".split()
)

#: US states (names and postal codes), countries and large cities, for English place names.
US_STATE_CODES = frozenset(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH "
    "OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC".split()
)
EN_PLACES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine",
    "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska",
    "Nevada", "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio",
    "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas",
    "Utah", "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming",
    "New York City", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio", "San Diego",
    "Dallas", "San Jose", "Austin", "Jacksonville", "San Francisco", "Columbus", "Seattle", "Denver", "Boston",
    "Detroit", "Nashville", "Portland", "Las Vegas", "Memphis", "Louisville", "Baltimore", "Milwaukee",
    "Albuquerque", "Tucson", "Fresno", "Sacramento", "Atlanta", "Miami", "Oakland", "Minneapolis", "Tulsa",
    "Cleveland", "New Orleans", "Honolulu", "Pittsburgh", "Cincinnati", "St. Louis", "Orlando", "Tampa",
    "Springfield", "Salt Lake City", "Richmond", "Buffalo", "Anchorage", "Toronto", "Vancouver", "Montreal",
    "London", "Manchester", "Birmingham", "Edinburgh", "Glasgow", "Dublin", "Paris", "Berlin", "Munich",
    "Hamburg", "Frankfurt", "Madrid", "Barcelona", "Rome", "Milan", "Amsterdam", "Brussels", "Vienna", "Zurich",
    "Geneva", "Stockholm", "Oslo", "Copenhagen", "Helsinki", "Warsaw", "Prague", "Budapest", "Lisbon", "Athens",
    "Istanbul", "Moscow", "Dubai", "Cairo", "Lagos", "Nairobi", "Johannesburg", "Cape Town", "Mumbai", "Delhi",
    "New Delhi", "Bangalore", "Karachi", "Dhaka", "Bangkok", "Singapore", "Kuala Lumpur", "Jakarta", "Manila",
    "Hanoi", "Seoul", "Tokyo", "Osaka", "Kyoto", "Beijing", "Shanghai", "Shenzhen", "Guangzhou", "Hong Kong",
    "Taipei", "Sydney", "Melbourne", "Brisbane", "Perth", "Auckland", "Mexico City", "Sao Paulo",
    "Rio de Janeiro", "Buenos Aires", "Lima", "Bogota", "Santiago",
    "United States", "USA", "Canada", "Mexico", "Brazil", "Argentina", "United Kingdom", "UK", "England",
    "Scotland", "Wales", "Ireland", "France", "Germany", "Spain", "Italy", "Portugal", "Netherlands", "Belgium",
    "Switzerland", "Austria", "Sweden", "Norway", "Denmark", "Finland", "Poland", "Russia", "Ukraine", "Turkey",
    "Egypt", "Nigeria", "Kenya", "South Africa", "India", "Pakistan", "Bangladesh", "China", "Japan", "Korea",
    "South Korea", "Vietnam", "Thailand", "Malaysia", "Indonesia", "Philippines", "Australia", "New Zealand",
)

#: English street-type words for street addresses.
EN_STREET_TYPES = (
    "Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Ln", "Drive", "Dr", "Court",
    "Ct", "Way", "Place", "Pl", "Terrace", "Parkway", "Pkwy", "Highway", "Hwy", "Circle", "Cir", "Square",
    "Trail", "Alley", "Crescent", "Close",
)

#: English organisation suffixes.
EN_ORG_SUFFIXES = (
    "Inc", "Inc.", "Corp", "Corp.", "Corporation", "LLC", "L.L.C.", "Ltd", "Ltd.", "Limited", "PLC", "GmbH",
    "AG", "S.A.", "Co.", "Company", "Group", "Holdings", "Bank", "University", "College", "Institute",
    "Hospital", "Clinic", "Foundation", "Association", "Agency", "Partners", "Technologies", "Systems",
    "Labs", "Laboratories", "Airlines", "Insurance", "Consulting", "Solutions", "Industries",
)
